"""Shared fixtures: an isolated PostgreSQL database, a SQLite URL, environment hygiene."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _postgres_base_url() -> str | None:
    return os.environ.get("PARETUNE_TEST_POSTGRES_URL")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'paretune.db'}"


@pytest.fixture
def postgres_url():
    """A fresh database on the server named by PARETUNE_TEST_POSTGRES_URL, dropped afterwards.

    Without that variable the test is skipped, unless PARETUNE_REQUIRE_POSTGRES=1 (as in CI),
    where a missing or unreachable server fails the test instead.
    """
    base = _postgres_base_url()
    required = os.environ.get("PARETUNE_REQUIRE_POSTGRES") == "1"
    if not base:
        if required:
            pytest.fail("PARETUNE_REQUIRE_POSTGRES=1 but PARETUNE_TEST_POSTGRES_URL is not set")
        pytest.skip("PARETUNE_TEST_POSTGRES_URL not set")
    from sqlalchemy import create_engine, text

    name = f"paretune_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(  # pre-ping: a test may restart the server meanwhile
        base, isolation_level="AUTOCOMMIT", pool_pre_ping=True, connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # server down
        admin.dispose()
        if required:
            pytest.fail(f"PostgreSQL at {base} unreachable: {e}")
        pytest.skip(f"PostgreSQL unreachable: {e}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="module")
def ray_session(request):
    """A local Ray (2 CPUs, no dashboard) for one test module, shut down after it.

    ``address="local"`` never joins a cluster someone else started on this machine; the module is
    pickled by value, since Ray workers cannot import tests/ (its fake trainers travel so). A
    module's ``RAY_GPUS`` declares that many GPUs on the node (Ray schedules them on a CPU-only
    machine as on a real one)."""
    import logging

    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(request.module)
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=getattr(request.module, "RAY_GPUS", 0),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield
    ray.shutdown()
