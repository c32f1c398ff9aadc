"""Service overhead: a study whose trials return at once, on SQLite and on PostgreSQL.

    python benchmarks/service_quick.py [--trials 50] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
    python benchmarks/service_quick.py --tiny   # also: examples/tiny.yaml with the real trainer

The trial function reports every evaluation step immediately, so what is timed is paretune and Ray
Tune: asking Optuna, sampling the plan, starting the Ray trial, recording the metrics, telling the
result, the hypervolume. Printed per storage:

- total: ``service.submit`` from call to return, Ray start-up included;
- loop: first trial start to last trial end (Optuna's timestamps), i.e. without Ray start-up;
- per trial: loop / trials.

The PostgreSQL run uses a fresh database on the server (dropped afterwards); without a reachable
server it is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


def instant(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """A trial function that trains nothing: one report per evaluation step, at once."""
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for step in eval_steps:
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc, "train_seconds": 0.0}):
            break
    return {}


def spec_yaml(name: str, n_trials: int, concurrent: int) -> str:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [0, 4, 8, 16]},
            "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        },
        "search": {
            "n_trials": n_trials,
            "max_steps": 90,
            "min_steps": 10,
            "eta": 3,
            "scheduler": "none",
            "sampler": "tpe",
            "max_concurrent": concurrent,
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def loop_seconds(url: str, name: str) -> tuple[float, int]:
    import optuna

    trials = optuna.load_study(study_name=name, storage=url).trials
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return (end - start).total_seconds(), len(trials)


def run(url: str, n_trials: int, concurrent: int, workdir: Path) -> tuple[float, float, int]:
    from paretune.search.service import lifecycle as service
    from paretune.search.service.driver import DriverOptions
    from paretune.spaces import parse_spec

    name = f"quick-{uuid.uuid4().hex[:6]}"
    loaded = parse_spec(spec_yaml(name, n_trials, concurrent), f"{name}.yaml")
    start = time.perf_counter()
    outcome = service.submit(
        loaded,
        storage=url,
        trial_fn=instant,
        options=DriverOptions(num_cpus=2, run_dir=str(workdir / name)),
    )
    total = time.perf_counter() - start
    if outcome.status != "done":
        raise SystemExit(f"{name}: {outcome.status}: {outcome.message}")
    loop, n = loop_seconds(url, name)
    return total, loop, n


def fresh_postgres(base: str) -> tuple[str, object] | None:
    from sqlalchemy import create_engine, text

    name = f"paretune_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # server down
        print(f"postgres: skipped ({type(e).__name__}: {str(e).splitlines()[0]})")
        admin.dispose()
        return None
    return base.rsplit("/", 1)[0] + "/" + name, (admin, name)


def drop_postgres(handle: object) -> None:
    from sqlalchemy import text

    admin, name = handle  # type: ignore[misc]
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def tiny(workdir: Path) -> None:
    """examples/tiny.yaml with the real trainer, as `paretune submit` runs it."""
    from paretune.search.service import lifecycle as service
    from paretune.search.service.driver import DriverOptions
    from paretune.spaces import load_spec

    loaded = load_spec(REPO / "examples" / "tiny.yaml")
    url = f"sqlite:///{workdir / 'tiny.db'}"
    loaded.spec = loaded.spec.model_copy(update={"artifacts": str(workdir / "runs" / "tiny")})
    start = time.perf_counter()
    outcome = service.submit(loaded, storage=url, options=DriverOptions(num_cpus=2))
    total = time.perf_counter() - start
    loop, n = loop_seconds(url, loaded.spec.study)
    import collections

    import optuna

    states = collections.Counter(
        t.state.name for t in optuna.load_study(study_name="tiny", storage=url).trials
    )
    print(
        f"tiny.yaml  {outcome.status}: {n} trials {dict(states)}  total {total:.1f} s  loop {loop:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="a server URL; the benchmark creates and drops its own database there",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="also run examples/tiny.yaml with the real trainer"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with tempfile.TemporaryDirectory(prefix="paretune-bench-") as tmp:
        workdir = Path(tmp)
        print(f"{args.trials} trials that return at once, max_concurrent {args.concurrent}, 2 CPUs")
        print(f"{'storage':<10} {'total s':>8} {'loop s':>8} {'s/trial':>8}")
        results = [("sqlite", f"sqlite:///{workdir / 'quick.db'}", None)]
        pg = fresh_postgres(args.postgres)
        if pg is not None:
            results.append(("postgres", pg[0], pg[1]))
        try:
            for label, url, _ in results:
                total, loop, n = run(url, args.trials, args.concurrent, workdir)
                print(f"{label:<10} {total:8.1f} {loop:8.1f} {loop / n:8.3f}")
        finally:
            if pg is not None:
                drop_postgres(pg[1])
        if args.tiny:
            tiny(workdir)
    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    main()
