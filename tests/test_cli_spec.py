"""``paretune validate`` and ``paretune trial`` from the command line, good and bad input."""

from __future__ import annotations

import json
import sys

import pytest

from paretune.search.cli.app import main

TINY = """\
study: t
model: tiny-bert
task: {{dataset: {dataset}, max_length: 24, val_size: 40, test_size: 20, synthetic_size: 300{extra}}}
objectives: [accuracy, trainable_params]
space:
  lora: {{targets: [query, value], ranks: {ranks}}}
  learning_rate: {lr}
search: {{max_steps: 20, min_steps: 10}}
"""


def write(
    tmp_path,
    dataset="synthetic",
    ranks="[0, 4]",
    lr="{low: 1.0e-3, high: 1.0e-2, log: true}",
    extra="",
    model=None,
    max_length=24,
):
    text = TINY.format(dataset=dataset, ranks=ranks, lr=lr, extra=extra)
    text = text.replace("max_length: 24", f"max_length: {max_length}")
    if model:
        text = text.replace("model: tiny-bert", f"model: {model}")
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return str(p)


def run(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["paretune", *argv])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_prints_dimensions_size_and_parameter_range(tmp_path, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "validate", write(tmp_path))
    assert code == 0
    flat = " ".join(out.split())
    assert "4 layers, hidden 64" in flat
    assert (
        "query (attention.self.query), key (attention.self.key), value (attention.self.value), "
        "attention_output (attention.output.dense), intermediate (intermediate.dense), "
        "output (output.dense)"
    ) in flat
    assert "search dimensions 9" in flat  # 4 layers x 2 targets + learning rate
    assert "space size 256 x continuous (learning_rate)" in flat
    assert "130 .. 4,226" in flat  # head only .. r4 everywhere: 8 * 4 * 128 + 130


def test_trial_json_prints_one_object_with_the_metrics(tmp_path, monkeypatch, capsys):
    spec = write(tmp_path)
    code, out, _ = run(
        monkeypatch,
        capsys,
        "trial",
        spec,
        "--params",
        '{"lora.rank.*": 4, "learning_rate": 0.005}',
        "--json",
    )
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert set(metrics) >= {
        "accuracy",
        "macro_f1",
        "eval_loss",
        "trainable_params",
        "train_seconds",
        "peak_memory_mb",
    }
    assert metrics["trainable_params"] == 4226 and metrics["steps"] == 20


@pytest.mark.parametrize(
    ("kwargs", "argv_tail", "expected"),
    [
        ({"model": "no-such-model"}, [], "unknown model 'no-such-model'"),
        ({"model": "org/some-hub-model"}, [], "hub cannot be reached"),
        ({"dataset": "imaginary"}, [], "unknown data set 'imaginary'"),
        ({"ranks": "[0, 128]"}, [], "rank 128 is larger than query's dimension 64"),
        ({"ranks": "[0, -2]"}, [], "ranks must be >= 0"),
        ({"lr": "{low: 1.0e-2, high: 1.0e-3}"}, [], "bounds are reversed"),
        ({"max_length": 1024}, [], "1024 is above the position limit of tiny-bert, 512 tokens"),
        (
            {"max_length": 600, "model": "tiny-gpt2"},
            [],
            "600 is above the position limit of tiny-gpt2, 512 tokens",
        ),
    ],
)
def test_bad_input_gives_one_line_and_status_2(
    tmp_path, monkeypatch, capsys, kwargs, argv_tail, expected
):
    code, out, err = run(monkeypatch, capsys, "validate", write(tmp_path, **kwargs), *argv_tail)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_bad_files_and_columns(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "not found" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("study: [x\n")
    code, _, err = run(monkeypatch, capsys, "validate", str(broken))
    assert code == 2 and "YAML syntax error" in err
    csv = tmp_path / "data.csv"
    csv.write_text("sentence,label\nhello,1\n")
    code, _, err = run(monkeypatch, capsys, "validate", write(tmp_path, dataset=str(csv)))
    assert code == 2 and "text" in err and "sentence" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    code, _, err = run(monkeypatch, capsys, "validate", write(tmp_path, dataset=str(empty)))
    assert code == 2 and "empty" in err
    bad_objective = tmp_path / "obj.yaml"
    bad_objective.write_text("study: x\nobjectives: [accuracy, latency]\n")
    code, _, err = run(monkeypatch, capsys, "validate", str(bad_objective))
    assert code == 2 and "unknown objective 'latency'" in err


def test_trial_params_errors(tmp_path, monkeypatch, capsys):
    spec = write(tmp_path)
    code, _, err = run(monkeypatch, capsys, "trial", spec, "--params", '{"lora.rank.*": 5}')
    assert code == 2 and "lora.rank.L0.query=5 is not among its choices: 0, 4" in err
    code, _, err = run(monkeypatch, capsys, "trial", spec, "--params", "{not json")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run(monkeypatch, capsys, "trial", spec, "--params", '{"warp.speed": 9}')
    assert code == 2 and "unknown parameter 'warp.speed'" in err
