"""Database faults: PostgreSQL restarted mid-study loses nothing; a read-only or full SQLite file
gives one clear line and exit status 2, and the study's rows stay as they were.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import Pool

from paretune.search.cli import study as cli_study
from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions, run_study
from paretune.search.store.study_store import is_transient, open_store, retrying
from paretune.search.store.urls import StorageError
from paretune.spaces import parse_spec

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import (  # noqa: E402
    assert_one_error_line,
    db_digest,
    finished_study,
    run_cli,
    spec_data,
)

PG_VERSION = (sorted(os.listdir("/etc/postgresql")) or ["15"])[-1] if os.path.isdir("/etc/postgresql") else "15"  # fmt: skip
PG_CTL = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main"]


def slow_fake(spec: Any, config: Any, reporter: Any, *, max_steps: int, eval_steps: list[int], trial_dir: Any = None) -> dict[str, float]:  # fmt: skip
    """Reports every step, 0.25 s apart: a restart of the server always falls inside the study."""
    metrics: dict[str, float] = {}
    for step in eval_steps:
        time.sleep(0.25)
        metrics = {"accuracy": 0.5 + step / 100, "eval_loss": 1.0 - step / 100}
        if not reporter(step, metrics):
            break
    return metrics


def pg_running() -> bool:
    return subprocess.run([*PG_CTL[:1], PG_VERSION, "main", "status"], capture_output=True).returncode == 0  # fmt: skip


@pytest.mark.postgres
def test_postgres_restart_mid_study_loses_no_result(postgres_url, ray_session, tmp_path, caplog):
    if shutil.which("pg_ctlcluster") is None or not pg_running():
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster")
    name = "restart"
    data = spec_data(name)
    data["search"].update(n_trials=4, max_steps=12, min_steps=4, eval_every=1, max_concurrent=2)
    loaded = parse_spec(yaml.safe_dump(data), f"{name}.yaml")
    store = open_store(postgres_url)
    ctx = service.prepare_submit(store, loaded).ctx
    restarted = threading.Event()

    def restart_after_first_results() -> None:
        deadline = time.monotonic() + 60
        while store.count_metrics(ctx.study_id) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        # a restart with an outage the study must feel: results keep coming every 0.25 s
        subprocess.run([*PG_CTL, "stop"], check=True, capture_output=True, timeout=60)
        time.sleep(1.5)
        subprocess.run([*PG_CTL, "start"], check=True, capture_output=True, timeout=60)
        restarted.set()

    caplog.set_level(logging.WARNING, logger="paretune")
    thread = threading.Thread(target=restart_after_first_results, daemon=True)
    try:
        thread.start()
        outcome = run_study(
            ctx,
            trial_fn=slow_fake,
            options=DriverOptions(run_dir=str(tmp_path / "r"), heartbeat_s=0.5),
        )
        thread.join(timeout=60)
    finally:
        if not pg_running():
            subprocess.run([*PG_CTL, "start"], capture_output=True, timeout=60)
    assert restarted.is_set()
    assert outcome.status == "done", outcome.message
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    steps = list(range(1, 13))
    for t in trials:
        rows = store.metrics(ctx.study_id, trial_number=t.number)
        got = {(r["step"], r["name"]) for r in rows}
        assert got == {(s, n) for s in steps for n in ("accuracy", "eval_loss", "trainable_params")}
        assert t.intermediate_values == {s: 0.5 + s / 100 for s in steps}
        assert t.values[0] == pytest.approx(0.62)
    # the restart was felt, and waited out
    assert any("retrying" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    assert store.get_study(name).status == "done"
    store.dispose()


def test_retry_helper_retries_transient_errors_only(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return "ok"

    assert retrying(flaky, "test", "db") == "ok" and len(calls) == 3
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    readonly = StorageError("storage x failed: attempt to write a readonly database")
    assert not is_transient(full) and not is_transient(readonly)
    assert is_transient(StorageError("storage x failed: the database system is starting up"))
    calls.clear()

    def always_full() -> None:
        calls.append(1)
        raise full

    with pytest.raises(OperationalError):
        retrying(always_full, "test", "db")
    assert len(calls) == 1  # a lasting error fails at once


def integrity_ok(path: Path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


@pytest.fixture
def done_db(tmp_path) -> Path:
    path = tmp_path / "study.db"
    finished_study(f"sqlite:///{path}")
    return path


def make_read_only(path: Path) -> Any:
    """chmod 444; as root (where chmod does not stop writes) also the immutable flag."""
    path.chmod(0o444)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a file read-only")
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i refused here")

    def undo() -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o644)

    return undo


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["submit", "{spec}"], "the database file is read-only"),
        (["resume", "done", "--add-trials", "2"], "attempt to write a readonly database"),
        (["resume", "done"], "attempt to write a readonly database"),
        (["delete", "done", "--yes"], "attempt to write a readonly database"),
    ],
    ids=["submit", "resume-add", "resume", "delete"],
)
def test_a_read_only_sqlite_file_gives_one_line(done_db, tmp_path, monkeypatch, capsys, argv, expected):  # fmt: skip
    spec = tmp_path / "other.yaml"
    spec.write_text(yaml.safe_dump(spec_data("other")))
    before = db_digest(done_db)
    monkeypatch.chdir(tmp_path)
    undo = make_read_only(done_db)
    try:
        args = [a.format(spec=spec) for a in argv]
        code, out, err = run_cli(monkeypatch, capsys, *args, "--storage", f"sqlite:///{done_db}")
        assert_one_error_line(code, out, err, expected)
        # reading still works
        code, out, err = run_cli(monkeypatch, capsys, "status", "done", "--storage", f"sqlite:///{done_db}")  # fmt: skip
        assert code == 0, err
    finally:
        undo()
    assert integrity_ok(done_db)
    assert db_digest(done_db) == before


@pytest.fixture
def full_disk(done_db):
    """Cap the database at the pages it has now (``PRAGMA max_page_count`` on every connection)."""
    pages = sqlite3.connect(done_db).execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_conn: Any, record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            files = [row[2] for row in cur.execute("PRAGMA database_list")]
            if str(done_db) in files:
                cur.execute(f"PRAGMA max_page_count = {int(pages)}")
        finally:
            cur.close()

    event.listen(Pool, "connect", cap)
    try:
        yield done_db
    finally:
        event.remove(Pool, "connect", cap)


def test_a_full_sqlite_file_refuses_a_new_study_with_one_line(full_disk, tmp_path, monkeypatch, capsys):  # fmt: skip
    spec = tmp_path / "big.yaml"
    notes = "".join(f"# note {i}: {'x' * 100}\n" for i in range(2000))  # 200 kB: needs new pages
    spec.write_text(notes + yaml.safe_dump(spec_data("other")))
    before = db_digest(full_disk)
    code, out, err = run_cli(monkeypatch, capsys, "submit", str(spec), "--storage", f"sqlite:///{full_disk}")  # fmt: skip
    assert_one_error_line(code, out, err, "database or disk is full")
    assert integrity_ok(full_disk)
    assert db_digest(full_disk) == before


def test_a_sqlite_file_that_fills_up_mid_study_stops_with_one_line(full_disk, ray_session, tmp_path, monkeypatch, capsys):  # fmt: skip
    monkeypatch.setattr(cli_study, "TRIAL_FN", slow_fake)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{full_disk}"
    study = optuna.load_study(study_name="done", storage=url)
    before = {t.number: (t.state, t.values, t.params) for t in study.trials}
    code, out, err = run_cli(monkeypatch, capsys, "resume", "done", "--add-trials", "200", "--storage", url)  # fmt: skip
    assert_one_error_line(code, out, err, "database or disk is full")
    assert integrity_ok(full_disk)
    after = optuna.load_study(study_name="done", storage=url).trials
    assert {t.number: (t.state, t.values, t.params) for t in after if t.number in before} == before


def test_a_store_that_fails_for_good_mid_trial_stops_with_one_line_and_resume_recovers(
    done_db, ray_session, tmp_path, monkeypatch, capsys
):
    """A write that fails past its retries inside Ray Tune's result handling (which wraps it in
    a TuneError) still ends the command with the store's one line and status 2."""
    from paretune.search.store.study_store import StudyStore

    monkeypatch.setattr(cli_study, "TRIAL_FN", slow_fake)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{done_db}"
    real = StudyStore.record_metrics
    calls: list[int] = []

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 2:
            raise StorageError(f"storage {url} failed: the server is gone for good")
        real(self, *args, **kwargs)

    monkeypatch.setattr(StudyStore, "record_metrics", failing)
    code, out, err = run_cli(monkeypatch, capsys, "resume", "done", "--add-trials", "2", "--storage", url)  # fmt: skip
    assert_one_error_line(code, out, err, "the server is gone for good")
    monkeypatch.setattr(StudyStore, "record_metrics", real)
    trials = optuna.load_study(study_name="done", storage=url).trials
    assert not any(t.state == TrialState.RUNNING for t in trials)  # interrupted, queued again
    code, out, err = run_cli(monkeypatch, capsys, "resume", "done", "--storage", url)
    assert code == 0, err
    budget = service.budget_of(open_store(url), "done")
    assert budget.used == budget.n_trials == 5
