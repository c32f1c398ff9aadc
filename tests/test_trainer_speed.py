"""benchmarks/trainer_speed.py runs in its quick mode and prints the table and its last line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import trainer_speed  # noqa: E402

from paretune.trainers.precision import cpu_has_native_bf16, resolve_precision  # noqa: E402


def test_quick_mode_prints_every_trainer_and_the_ratio(capsys):
    threads = torch.get_num_threads()
    try:
        argv = ["--quick", "--steps", "6", "--plans", "lora-r8-qv-top-half", "--cpus", "1"]
        assert trainer_speed.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    rows = {
        line.split()[1]: line.split() for line in out if line.startswith("lora-r8-qv-top-half ")
    }
    # quick mode: paretune and the Trainer configuration the bf16 probe says is faster
    bf16_faster = resolve_precision("auto", torch.device("cpu")) is not None
    faster = "hf-trainer+peft-bf16" if bf16_faster and cpu_has_native_bf16() else "hf-trainer+peft"
    assert set(rows) == {"paretune", faster}
    assert any("each run in a new process" in line for line in out)
    for cells in rows.values():
        seconds, accuracy = float(cells[2]), float(cells[4])
        assert seconds > 0 and 0.0 <= accuracy <= 1.0
    assert rows[faster][6] == "1.00x"  # the ratio column is against the faster Trainer
    match = re.fullmatch(r"paretune_speedup_vs_hf_trainer: (\d+\.\d\d)", out[-1])
    assert match and match.group(1) + "x" == rows["paretune"][6]  # one plan: its own ratio


def test_paca_vs_lora_compares_equal_parameter_counts_step_by_step(capsys):
    import paca_vs_lora  # noqa: PLC0415

    threads = torch.get_num_threads()
    try:
        assert paca_vs_lora.main(["--quick", "--pairs", "3", "--cpus", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    counts = re.findall(r"(lora|paca) (\d[\d,]*\d)", out[0])
    assert len(counts) == 2 and counts[0][1] == counts[1][1]  # equal trainable parameters
    assert re.search(r"PaCA faster in \d of 3 pairs", "\n".join(out))
    match = re.fullmatch(r"paca_step_speedup_vs_lora: (\d+\.\d{3})", out[-1])
    assert match and float(match.group(1)) > 0


def test_median_interval_brackets_the_median():
    import paca_vs_lora  # noqa: PLC0415

    lo, hi = paca_vs_lora.median_interval([float(v) for v in range(1, 201)])
    assert lo < 100.5 < hi and hi - lo < 30  # about 1.96 sqrt(200) order statistics wide


def test_first_token_check_passes_its_checks_and_prints_the_three_timings(capsys):
    import first_token_check  # noqa: PLC0415

    assert first_token_check.main(["--device", "cpu", "--tokens", "16", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "bit-identical logits and grads: True" in out
    for variant in ("plain", "first-token ", "first-token+bf16-frozen"):
        assert re.search(rf"{re.escape(variant)}\s*[0-9.]+ ms fwd\+bwd", out), variant


def test_dropout_masks_times_every_variant_and_restores_paretune_dropout(capsys):
    import dropout_masks  # noqa: PLC0415

    from paretune.kernels import fast_dropout  # noqa: PLC0415

    original = fast_dropout.dropout
    threads = torch.get_num_threads()
    try:
        assert dropout_masks.main(["--calls", "2", "--rounds", "1", "--cpus", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert fast_dropout.dropout is original  # the step comparison put paretune's masks back
    out = capsys.readouterr().out.strip().splitlines()
    rows = [line for line in out if line.startswith(("attention probs", "hidden states"))]
    assert len(rows) == 4  # two tensors, fp32 and bf16
    for row in rows:
        *times, ratio = row.split()[-4:]
        assert all(float(t) > 0 for t in times) and ratio.endswith("x")
    steps = next(line for line in out if line.startswith("MiniLM-L6 step"))
    for variant in ("F.dropout", "mt-words", "paretune"):
        assert re.search(rf"{re.escape(variant)} \d+\.\d{{4}}", steps), variant
    match = re.fullmatch(r"dropout_step_speedup_vs_torch: (\d+\.\d{3})", out[-1])
    assert match and float(match.group(1)) > 0


def test_eval_attention_compares_the_two_paths_and_restores_paretune_attention(capsys):
    import eval_attention  # noqa: PLC0415
    from transformers import AttentionInterface  # noqa: PLC0415

    from paretune.trainers import cpu_dropout  # noqa: PLC0415

    threads = torch.get_num_threads()
    try:
        assert eval_attention.main(["--rounds", "2", "--cpus", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    registered = AttentionInterface()[cpu_dropout.ATTENTION_NAME]
    assert registered is cpu_dropout.cpu_sdpa_attention  # the timed variant was put back
    out = capsys.readouterr().out.strip().splitlines()
    assert re.search(r"paretune \d+\.\d{4}, sdpa in eval \d+\.\d{4}", out[-2])
    match = re.fullmatch(r"eval_attention_step_speedup: (\d+\.\d{4}) \((\d) of 2 won\)", out[-1])
    assert match and float(match.group(1)) > 0


def test_in_process_run_with_the_padding_ablation(capsys):
    threads = torch.get_num_threads()
    try:
        argv = [
            "--quick",
            "--steps",
            "4",
            "--plans",
            "lora-r8-qv-all",
            "--cpus",
            "1",
            "--in-process",
            "--trainers",
            "paretune,paretune-pad1,hf-trainer+peft",
        ]
        assert trainer_speed.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "in this process" in out
    rows = {line.split()[1] for line in out.splitlines() if line.startswith("lora-r8-qv-all ")}
    assert rows == {"paretune", "paretune-pad1", "hf-trainer+peft"}
