"""``benchmarks/real_search.py --quick``: the real-task benchmark runs end to end (real
fine-tunes of minilm-l6, every method, the test-split scoring) and prints its two last lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_real_search_prints_both_last_lines(tmp_path):
    out = tmp_path / "real.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "real_search.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    beaten = re.fullmatch(r"real_search_baselines_beaten: (\d+)/(\d+)", lines[-2])
    ratio = re.fullmatch(r"real_search_hv_ratio_vs_tpe: (\S+)", lines[-1])
    assert beaten and ratio, lines[-5:]
    assert int(beaten.group(2)) == 6 and int(beaten.group(1)) <= 6  # six baselines, one data set
    float(ratio.group(1))
    text = res.stdout
    for name in (
        "LoRA r8 q,v",
        "LoRA r16 all projections",
        "IA3",
        "BitFit",
        "serial adapter 64",
        "parallel adapter 64",
    ):
        assert re.search(
            rf"{re.escape(name)}\s+\S+\s+0\.\d+\s+[\d,]+\s+(dominated|matched|loses)", text
        ), name
    assert out.exists()


def _real_search():
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(
        "real_search", ROOT / "benchmarks" / "real_search.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_search"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _trial(name, accuracy, params):
    return {
        "summary": name,
        "config": {"plan": {"name": name}, "hparams": {}},
        "complete": True,
        "accuracy": accuracy,
        "test_accuracy": accuracy,
        "trainable_params": params,
    }


def test_a_front_member_lucky_on_one_seed_gives_way_to_the_trial_it_hid():
    """The validation front is taken on seed means: a small trial that won on its one seed
    and dominated a bigger, better one is rerun, falls back, and the bigger one enters and is
    rerun in its turn; a trial never on a front is never rerun."""
    rs = _real_search()
    lucky = _trial("lucky", 0.89, 10_000)  # 0.89 once, 0.75 on its reruns
    hidden = _trial("hidden", 0.86, 26_000)  # dominated by lucky's one seed
    big = _trial("big", 0.92, 600_000)
    poor = _trial("poor", 0.60, 700_000)  # dominated whatever the seeds say
    reruns = {"lucky": 0.75, "hidden": 0.87, "big": 0.91, "poor": 0.99}
    calls: list[list[str]] = []

    def retrain(batch):
        calls.append(sorted(t["summary"] for _, t in batch))
        return [
            [{"accuracy": reruns[t["summary"]], "test_accuracy": reruns[t["summary"]]}] * 2
            for _, t in batch
        ]

    fronts = rs.confirmed_fronts({"run": ("vader-tweets", [lucky, hidden, big, poor])}, retrain)
    assert calls == [["big", "lucky"], ["hidden"]]
    assert [t["summary"] for t in fronts["run"]] == ["lucky", "hidden", "big"]
    assert hidden["val_mean"] == (0.86 + 0.87 * 2) / 3
    assert lucky["test_scores"] == [0.89, 0.75, 0.75]
    assert "val_mean" not in poor
