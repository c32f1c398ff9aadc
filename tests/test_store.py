"""The study store on SQLite and PostgreSQL: round trips, schema versions, URLs, bad storage."""

from __future__ import annotations

import time
from datetime import timedelta

import optuna
import pytest
from sqlalchemy import update

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import claim, driver_is_dead_here, driver_is_live
from paretune.search.store.study_store import SCHEMA_VERSION, Meta, StudyRow, open_store, utcnow
from paretune.search.store.urls import DEFAULT_STORAGE, ENV_STORAGE, StorageError
from paretune.spaces import parse_spec
from paretune.spaces.errors import UserError


@pytest.fixture(params=["sqlite", "postgres"])
def url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def test_round_trip(url):
    store = open_store(url)
    try:
        info = store.create_study(
            "rt", "study: rt\n", '{"study": "rt"}', "abc", n_trials=5, max_steps=9
        )
        assert store.get_study("rt") == info and store.study_names() == ["rt"]
        with pytest.raises(UserError, match="already exists"):
            store.create_study("rt", "", "{}", "x", 1, 1)
        store.update_study("rt", n_trials=8)
        store.set_status("rt", "running")
        again = store.get_study("rt")
        assert (again.n_trials, again.status, again.max_steps) == (8, "running", 9)

        store.record_metrics(info.id, 0, 3, {"accuracy": 0.5, "trainable_params": 1234})
        store.record_metrics(info.id, 0, 9, {"accuracy": 0.75})
        rows = store.metrics(info.id, trial_number=0, name="accuracy")
        assert [(r["step"], r["value"]) for r in rows] == [(3, 0.5), (9, 0.75)]
        assert store.count_metrics(info.id) == 3

        store.log_event(
            info.id, "trial_failed", {"traceback": "Traceback ...\nValueError: x"}, trial_number=0
        )
        events = store.events(info.id, kinds=["trial_failed"])
        assert (
            events[0]["detail"]["traceback"].endswith("ValueError: x")
            and events[0]["trial_number"] == 0
        )

        store.record_hypervolume(info.id, 1, 9, 0.25)
        store.record_hypervolume(info.id, 2, 18, 0.5)
        assert [
            (h["n_complete"], h["compute_steps"], h["value"])
            for h in store.hypervolume_history(info.id)
        ] == [
            (1, 9, 0.25),
            (2, 18, 0.5),
        ]

        # the heartbeat claim: one live driver, a second refused unless it joins
        assert store.claim_driver("rt", "host-a:1:x", join=False, stale_after_s=30)
        assert not store.claim_driver("rt", "host-b:2:y", join=False, stale_after_s=30)
        assert store.claim_driver("rt", "host-b:2:y", join=True, stale_after_s=30)
        store.release_driver("rt", "host-b:2:y")
        assert store.get_study("rt").driver_id is None

        optuna.create_study(study_name="rt", storage=store.optuna_storage())
        store.delete_study("rt")
        assert store.find_study("rt") is None and store.count_metrics(info.id) == 0
        assert "rt" not in [
            s.study_name for s in optuna.get_all_study_summaries(store.optuna_storage())
        ]
    finally:
        store.dispose()


def test_a_newer_schema_is_refused(sqlite_url):
    store = open_store(sqlite_url)
    with store.session() as s:
        s.execute(
            update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION + 1))
        )
    store.dispose()
    with pytest.raises(
        StorageError,
        match=rf"schema v{SCHEMA_VERSION + 1}, newer than this paretune .*upgrade paretune",
    ):
        open_store(sqlite_url)


def test_storage_url_precedence(monkeypatch, tmp_path):
    spec = parse_spec(f"study: p\nstorage: sqlite:///{tmp_path}/spec.db\n").spec
    monkeypatch.delenv(ENV_STORAGE, raising=False)
    assert service.storage_url() == DEFAULT_STORAGE
    assert service.storage_url(None, spec) == f"sqlite:///{tmp_path}/spec.db"
    monkeypatch.setenv(ENV_STORAGE, f"sqlite:///{tmp_path}/env.db")
    assert service.storage_url(None, spec) == f"sqlite:///{tmp_path}/env.db"
    assert (
        service.storage_url(f"sqlite:///{tmp_path}/cli.db", spec) == f"sqlite:///{tmp_path}/cli.db"
    )
    assert service.storage_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "bad",
    [
        "mysql://u@h/db",
        "sqlite://relative.db",
        "postgresql+psycopg://u@h",
        "not a url",
        "postgresql+psycopg:///db",
    ],
)
def test_malformed_urls_are_user_errors(bad):
    with pytest.raises(StorageError, match="malformed storage URL"):
        open_store(bad)


def test_unreachable_storage_fails_fast_without_the_password():
    start = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach storage") as err:
        open_store("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x")
    assert time.monotonic() - start < 10
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def test_read_commands_do_not_create_a_database(tmp_path):
    with pytest.raises(StorageError, match="no such database file"):
        open_store(f"sqlite:///{tmp_path}/missing.db", create=False)


def test_driver_liveness(sqlite_url):
    store = open_store(sqlite_url)
    try:
        store.create_study("live", "", "{}", "h", 1, 1)
        claim(store, "live", "elsewhere:123:abc", join=False, stale_after_s=30)
        assert driver_is_live(store.get_study("live"))
        with pytest.raises(UserError, match="--join"):
            claim(store, "live", "here:1:x", join=False, stale_after_s=30)
        # a stale heartbeat counts as dead
        with store.session() as s:
            s.execute(update(StudyRow).values(heartbeat_at=utcnow() - timedelta(seconds=60)))
        assert not driver_is_live(store.get_study("live"))
        claim(store, "live", "here:1:x", join=False, stale_after_s=30)
        # a driver of this host whose process is gone is dead at once, heartbeat or not
        import socket
        import subprocess
        import sys

        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        dead = f"{socket.gethostname()}:{proc.pid}:zz"
        assert driver_is_dead_here(dead)
        store.claim_driver("live", dead, join=True, stale_after_s=30)
        assert not driver_is_live(store.get_study("live"))
        claim(store, "live", "here:2:y", join=False, stale_after_s=30)
    finally:
        store.dispose()


PG_RACE = (
    "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
    '"pg_type_typname_nsp_index" [SQL: CREATE TABLE alembic_version (...)]'
)


def test_optuna_tables_created_by_another_process_meanwhile_are_used(sqlite_url, monkeypatch):
    """Two processes opening a fresh PostgreSQL store at once collide in CREATE TABLE; the one
    that loses looks again instead of failing."""
    from paretune.search.store import study_store as store_module

    real = store_module._retrying_rdb_class()
    calls = []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise StorageError(f"storage x: {PG_RACE}")
        return real(url, **kwargs)

    monkeypatch.setattr(store_module, "_retrying_rdb_class", lambda: racing)
    storage = open_store(sqlite_url).optuna_storage()
    assert len(calls) == 2 and storage.get_all_studies() == []


def test_other_schema_errors_are_not_retried(sqlite_url, monkeypatch):
    from paretune.search.store import study_store as store_module

    calls = []

    def broken(url, **kwargs):
        calls.append(url)
        raise RuntimeError("permission denied for schema public")

    monkeypatch.setattr(store_module, "_retrying_rdb_class", lambda: broken)
    with pytest.raises(StorageError, match="permission denied"):
        open_store(sqlite_url).optuna_storage()
    assert len(calls) == 1


def test_concurrent_first_opens_of_a_postgres_store_all_succeed(postgres_url):
    """Six drivers, dashboards or ``status`` calls open the same fresh database at once."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    barrier = Barrier(6)

    def first_open(_: int) -> int:
        barrier.wait()
        store = open_store(postgres_url)
        store.optuna_storage()
        return len(store.list_studies())

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(first_open, range(6))) == [0] * 6


def test_optuna_revision_stamped_by_another_opener_meanwhile_is_used(postgres_url, tmp_path):
    """Optuna stamps its schema revision after finding none stamped. Here another opener's
    transaction inserts the same revision between that check and this opener's insert, which then
    waits on the row's key and fails when the other commits: the real interleaving, forced."""
    import threading

    from sqlalchemy import create_engine, text

    head = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'head.db'}").get_current_version()
    other = create_engine(postgres_url)
    with other.connect() as conn:  # the empty table alembic makes before it stamps
        conn.execute(
            text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        conn.commit()
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})  # not committed
        outcome: list[object] = []

        def first_open() -> None:
            try:
                outcome.append(open_store(postgres_url).optuna_storage().get_all_studies())
            except Exception as e:
                outcome.append(e)

        opener = threading.Thread(target=first_open)
        opener.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        # (read in autocommit: inside one transaction pg_stat_activity shows one snapshot)
        deadline = time.monotonic() + 30
        with other.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            while watch.execute(text(waiting)).scalar() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert watch.execute(text(waiting)).scalar() == 1, outcome  # its insert waits on ours
        conn.commit()
    opener.join(timeout=30)
    other.dispose()
    assert outcome == [[]]
