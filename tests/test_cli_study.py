"""The study commands: submit, status, pareto, studies, delete; output formats; bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from paretune.search.cli import study as cli_study
from paretune.search.cli.app import app
from paretune.search.store.study_store import UnknownStudyError, open_store
from paretune.search.store.urls import StorageError
from paretune.spaces.errors import UserError

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("ray_session")  # every test here runs studies on Ray


def make_fake(pause: float = 0.0):
    """A trial function that trains nothing; ``pause`` seconds between evaluations."""

    def fake(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
        lora = config.plan.get("lora")
        rank = sum(r for _, _, r in lora.ranks) if lora else 0
        for i, step in enumerate(eval_steps):
            if i:
                time.sleep(pause)
            acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
            if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
                break
        return {}

    return fake


fake = make_fake()


@pytest.fixture(autouse=True)
def fake_trainer(monkeypatch):
    monkeypatch.setattr(cli_study, "TRIAL_FN", fake)


def write_spec(tmp_path, name: str = "cli", n_trials: int = 3, ranks=(0, 4, 8)) -> str:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": list(ranks)},
            "learning_rate": 0.001,
        },
        "search": {
            "n_trials": n_trials,
            "max_steps": 9,
            "min_steps": 3,
            "scheduler": "none",
            "sampler": "random",
        },
        "artifacts": str(tmp_path / "runs" / name),
    }
    path = tmp_path / f"{name}-{n_trials}-{len(ranks)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def done_study(tmp_path_factory):
    """One finished 3-trial study, shared by the read-only command tests."""
    tmp = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{tmp / 'cli.db'}"
    cli_study.TRIAL_FN = fake
    try:
        res = invoke("submit", write_spec(tmp), "--storage", url)
    finally:
        cli_study.TRIAL_FN = None
    assert res.exit_code == 0, (res.output, res.exception)
    return url, tmp


def test_submit_runs_the_study_and_prints_the_front(done_study):
    url, _ = done_study
    study = optuna.load_study(study_name="cli", storage=url)
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_status_formats(done_study):
    url, _ = done_study
    table = invoke("status", "--storage", url)
    assert table.exit_code == 0 and "cli" in table.stdout and "3/3" in table.stdout
    rows = json.loads(invoke("status", "--storage", url, "--format", "json").stdout)
    assert rows[0]["study"] == "cli" and rows[0]["status"] == "done"
    assert (
        rows[0]["trials"] == {"COMPLETE": 3} and rows[0]["used"] == 3 and rows[0]["hypervolume"] > 0
    )
    one = json.loads(invoke("status", "cli", "--storage", url, "--format", "json").stdout)
    assert [t["trial"] for t in one["trial_list"]] == [0, 1, 2]
    assert set(one["trial_list"][0]["values"]) == {"accuracy", "trainable_params"}
    assert one["trial_list"][0]["steps"] == 9
    lines = invoke("status", "cli", "--storage", url, "--format", "csv").stdout.splitlines()
    assert (
        lines[0] == "trial,state,accuracy,trainable_params,steps,summary,flags" and len(lines) == 4
    )
    text = invoke("status", "cli", "--storage", url).stdout
    assert "COMPLETE" in text and "Pareto front" in text
    studies = json.loads(invoke("studies", "--storage", url, "--format", "json").stdout)
    assert [s["study"] for s in studies] == ["cli"]


def test_pareto_formats(done_study):
    url, _ = done_study
    rows = json.loads(invoke("pareto", "cli", "--storage", url, "--format", "json").stdout)
    assert rows and all({"trial", "values", "params", "plan"} <= set(r) for r in rows)
    assert all(set(r["values"]) == {"accuracy", "trainable_params"} for r in rows)
    study = optuna.load_study(study_name="cli", storage=url)
    for r in rows:
        t = study.trials[r["trial"]]
        assert r["values"]["accuracy"] == t.values[0] and r["params"] == t.params
    text = invoke("pareto", "cli", "--storage", url, "--format", "csv").stdout
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["trial", "accuracy", "trainable_params", "summary", "params", "plan"]
    assert len(parsed) == len(rows) + 1 and json.loads(parsed[1][4]) == rows[0]["params"]
    table = invoke("pareto", "cli", "--storage", url).stdout
    assert "Pareto front of cli" in table and ("lora" in table or "head only" in table)


def test_name_clash_and_resume_if_exists(done_study):
    url, tmp = done_study
    same = invoke("submit", write_spec(tmp), "--storage", url)
    assert isinstance(same.exception, UserError) and "paretune resume cli" in str(same.exception)
    other = invoke("submit", write_spec(tmp, ranks=(0, 2)), "--storage", url)
    assert isinstance(other.exception, UserError)
    assert "use another study name, or `paretune delete cli --yes`" in str(other.exception)
    again = invoke("submit", write_spec(tmp), "--storage", url, "--resume-if-exists")
    assert again.exit_code == 0 and "budget of 3 trials spent" in again.stderr


def test_bad_input_is_one_clear_user_error(done_study, tmp_path):
    url, _ = done_study
    for args in (
        ("status", "nope"),
        ("pareto", "nope"),
        ("resume", "nope"),
        ("delete", "nope", "--yes"),
    ):
        res = invoke(*args, "--storage", url)
        assert isinstance(res.exception, UnknownStudyError) and "studies here: cli" in str(
            res.exception
        ), args
    start = time.monotonic()
    res = invoke("studies", "--storage", "postgresql+psycopg://postgres:pw@127.0.0.1:1/x")
    assert isinstance(res.exception, StorageError) and "cannot reach storage" in str(res.exception)
    assert time.monotonic() - start < 10 and ":pw@" not in str(res.exception)
    res = invoke("status", "--storage", "mysql://u@h/db")
    assert isinstance(res.exception, StorageError) and "malformed storage URL" in str(res.exception)
    res = invoke("pareto", "cli", "--storage", url, "--format", "xml")
    assert isinstance(res.exception, UserError) and "allowed: table, json, csv" in str(
        res.exception
    )
    res = invoke("status", "--storage", f"sqlite:///{tmp_path}/none.db")
    assert isinstance(res.exception, StorageError) and "no such database file" in str(res.exception)


def test_the_paretune_command_prints_one_line_and_exits_2(done_study):
    url, _ = done_study
    exe = os.path.join(os.path.dirname(sys.executable), "paretune")
    proc = subprocess.run(
        [exe, "pareto", "nope", "--storage", url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown study 'nope'") and proc.stderr.count("\n") == 1
    start = time.monotonic()
    proc = subprocess.run(
        [exe, "status", "--storage", "postgresql+psycopg://postgres@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 2
        and "cannot reach storage" in proc.stderr
        and time.monotonic() - start < 10
    )


def test_delete_needs_yes(tmp_path):
    url = f"sqlite:///{tmp_path / 'del.db'}"
    store = open_store(url)
    store.create_study("gone", "", "{}", "h", 1, 1)
    store.dispose()
    res = invoke("delete", "gone", "--storage", url)
    assert isinstance(res.exception, UserError) and "--yes" in str(res.exception)
    res = invoke("delete", "gone", "--storage", url, "--yes")
    assert res.exit_code == 0 and "deleted study 'gone'" in res.stderr
    assert json.loads(invoke("studies", "--storage", url, "--format", "json").stdout) == []


def test_ctrl_c_during_submit_exits_130(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_study, "TRIAL_FN", make_fake(pause=5.0))  # interrupted mid-trial
    url = f"sqlite:///{tmp_path / 'int.db'}"

    def interrupt_after_first_result():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                store = open_store(url, create=False)
                info = store.find_study("int")
                n = store.count_metrics(info.id) if info else 0
                store.dispose()
                if n:
                    break
            except StorageError:
                pass
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_first_result, daemon=True).start()
    res = invoke("submit", write_spec(tmp_path, "int", n_trials=4), "--storage", url)
    assert res.exit_code == 130, (res.output, res.exception)
    assert "interrupted" in res.stderr
    study = optuna.load_study(study_name="int", storage=url)
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    store = open_store(url)
    assert store.get_study("int").status == "interrupted"
    store.dispose()


def test_tables_piped_keep_long_names_and_one_hypervolume_format(tmp_path):
    from paretune.spaces.numbers import format_hypervolume

    name = "orphaned-tweets-three-class-sentiment-with-a-long-study-name"
    url = f"sqlite:///{tmp_path / 'long.db'}"
    cli_study.TRIAL_FN = fake
    try:
        res = invoke("submit", write_spec(tmp_path, name=name), "--storage", url)
    finally:
        cli_study.TRIAL_FN = None
    assert res.exit_code == 0, res.output
    hv = json.loads(invoke("status", "--storage", url, "--format", "json").stdout)[0]["hypervolume"]
    for command in (("studies",), ("status",), ("status", name)):
        text = invoke(*command, "--storage", url).stdout
        assert name in text, (command, text)  # not cut at 80 columns ("orph...")
        assert "…" not in text and "..." not in text
    assert (
        f"hypervolume {format_hypervolume(hv)}" in invoke("status", name, "--storage", url).stdout
    )
    assert format_hypervolume(41_893.7) == "41,890" and format_hypervolume(0.417234) == "0.4172"
