"""Load: a 100-trial study of a trial function that returns at once, 4 trials at a time, on
PostgreSQL, ends with a consistent store (the reduced form of ``benchmarks/service_overhead.py``,
whose full run is 500 trials).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "service_overhead.py"
TRIALS = 100


@pytest.fixture(scope="module")
def overhead():
    spec = importlib.util.spec_from_file_location("paretune_bench_service_overhead", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(module)  # Ray workers cannot import benchmarks/
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        yield module
    finally:
        ray.shutdown()
        sys.modules.pop(spec.name, None)


def test_a_hundred_instant_trials_on_postgres_leave_a_consistent_store(
    overhead, postgres_url, tmp_path
):
    started = time.monotonic()
    # the random sampler: the store's load is the point here, not TPE's reads of past trials
    run = overhead.run_paretune(postgres_url, TRIALS, 4, str(tmp_path), sampler="random")
    elapsed = time.monotonic() - started
    assert run.trials == TRIALS  # run_paretune checked the store
    assert elapsed < 120, f"{TRIALS} instant trials took {elapsed:.0f} s"


def test_the_consistency_check_catches_a_missing_metric_row(overhead, sqlite_url, tmp_path):
    """The check itself must fail on a broken store, or the test above proves nothing."""
    from sqlalchemy import delete

    from paretune.search.store.study_store import MetricRow, open_store

    run = overhead.run_paretune(sqlite_url, 6, 4, str(tmp_path))
    assert run.trials == 6
    store = open_store(sqlite_url)
    try:
        (info,) = store.list_studies()
        with store.session() as s:
            row = s.query(MetricRow).filter(MetricRow.study_id == info.id).first()
            s.execute(delete(MetricRow).where(MetricRow.id == row.id))
    finally:
        store.dispose()
    with pytest.raises(AssertionError, match="metric_rows"):
        overhead.check_store(sqlite_url, info.name, 6)
