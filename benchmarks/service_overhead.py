"""paretune's service overhead against Ray Tune's own ``OptunaSearch``, and a store consistency check.

    python benchmarks/service_overhead.py [--trials 500] [--concurrency 4]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--skip-optuna]

The same study three or four ways, in one Ray session (2 CPUs, each trial 2/concurrency of a CPU,
so ``--concurrency`` trials run at once; Ray start-up is outside every timing):

- ``paretune sqlite`` / ``paretune postgresql``: ``run_study`` with paretune's searcher, a trial
  function that reports its two evaluation steps at once (3 metrics each), every result written
  to the store, the hypervolume after each COMPLETE trial;
- ``ray OptunaSearch``: ``tune.Tuner`` with ``ray.tune.search.optuna.OptunaSearch``,
  multi-objective (accuracy max, trainable parameters min), in-memory Optuna storage, a similar
  space (one LoRA rank per layer and target, a log-uniform learning rate), the same two reports.

Printed per run: trials, wall seconds (``fit``/``run_study`` call), trials per second, the driver
process's CPU seconds (``time.process_time``: Tune's controller, the searcher, the database
client; Ray's own daemons and the trial workers are other processes), and the ratio of each
paretune run to ``OptunaSearch`` (wall and CPU): the overhead paretune adds. After each paretune
run the store is checked: every trial ended, metric rows = trials x reports x metrics,
hypervolume rows = COMPLETE trials.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

REPORTS = 2  # evaluation steps of every trial (rungs 3 and 9)
METRICS = 3  # accuracy, eval_loss, trainable_params
LAYERS, TARGETS, RANKS = 6, ("query", "value"), (0, 4, 8)


def instant(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """A paretune trial function that trains nothing: one report per evaluation step, at once."""
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for step in eval_steps:
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}


def instant_tune(config: dict[str, Any]) -> None:
    """The same trial as a plain Ray Tune function, for ``OptunaSearch``."""
    from ray import tune

    ranks = [v for k, v in config.items() if k.startswith("rank_")]
    rank = sum(ranks)
    for step in (3, 9):
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / 9
        tune.report({"accuracy": acc, "eval_loss": 1 - acc, "trainable_params": 1000.0 * rank + 1})


def spec_text(name: str, trials: int, concurrency: int, sampler: str = "tpe") -> str:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": list(TARGETS), "ranks": list(RANKS)},
            "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        },
        "search": {
            "n_trials": trials,
            "max_steps": 9,
            "min_steps": 3,
            "scheduler": "none",
            "sampler": sampler,
            "max_concurrent": concurrency,
        },
        "resources": {"cpus": round(2 / concurrency, 3)},
    }
    return yaml.safe_dump(data, sort_keys=False)


@dataclass(frozen=True)
class Run:
    name: str
    trials: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.trials / self.wall_s if self.wall_s else 0.0


def check_store(url: str, name: str, trials: int) -> dict[str, int]:
    """Raise AssertionError unless the store is consistent (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState

    from paretune.search.store.study_store import open_store

    study = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    open_ = [t.number for t in study if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    complete = sum(t.state == TrialState.COMPLETE for t in study)
    store = open_store(url, create=False)
    try:
        info = store.get_study(name)
        metrics = store.count_metrics(info.id)
        hv = len(store.hypervolume_history(info.id))
    finally:
        store.dispose()
    counts = {"trials": len(study), "complete": complete, "metric_rows": metrics, "hv_rows": hv}
    assert not open_, f"trials never ended: {open_}"
    assert len(study) == trials, counts
    assert complete == trials, counts
    assert metrics == trials * REPORTS * METRICS, counts
    assert hv == complete, counts
    return counts


def run_paretune(
    url: str, trials: int, concurrency: int, run_dir: str, sampler: str = "tpe"
) -> Run:
    """One paretune study on ``url``; the store is checked afterwards."""
    from paretune.search.service import lifecycle as service
    from paretune.search.service.driver import DriverOptions, run_study
    from paretune.search.store.study_store import open_store
    from paretune.spaces import parse_spec

    name = f"overhead-{uuid.uuid4().hex[:6]}"
    store = open_store(url)
    try:
        ctx = service.prepare_submit(
            store, parse_spec(spec_text(name, trials, concurrency, sampler), f"{name}.yaml")
        ).ctx
        options = DriverOptions(run_dir=run_dir, handle_sigint=False)
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = run_study(ctx, trial_fn=instant, options=options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        store.dispose()
    assert outcome.status == "done", outcome.message
    check_store(url, name, trials)
    return Run(f"paretune {url.split(':', 1)[0].split('+')[0]}", trials, wall, cpu)


def run_optuna_search(trials: int, concurrency: int, run_dir: str) -> Run:
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space: dict[str, Any] = {
        f"rank_{layer}_{target}": tune.choice(list(RANKS))
        for layer in range(LAYERS)
        for target in TARGETS
    }
    space["learning_rate"] = tune.loguniform(1e-4, 3e-3)
    searcher = OptunaSearch(
        metric=["accuracy", "trainable_params"],
        mode=["max", "min"],
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    tuner = tune.Tuner(
        tune.with_resources(instant_tune, {"cpu": round(2 / concurrency, 3)}),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=trials,
            max_concurrent_trials=concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"optuna-{uuid.uuid4().hex[:6]}", storage_path=run_dir, verbose=0
        ),
    )
    cpu, wall = time.process_time(), time.perf_counter()
    results = tuner.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(results) == trials and not results.errors
    return Run("ray OptunaSearch", trials, wall, cpu)


def table(runs: list[Run], baseline: Run | None) -> str:
    lines = [
        f"{'run':<22} {'trials':>6} {'wall s':>8} {'trials/s':>9} {'driver CPU s':>13} "
        f"{'CPU ms/trial':>13} {'x wall':>7} {'x CPU':>6}"
    ]
    for r in runs:
        ratio_wall = f"{r.wall_s / baseline.wall_s:.2f}" if baseline else "-"
        ratio_cpu = f"{r.cpu_s / baseline.cpu_s:.2f}" if baseline and baseline.cpu_s else "-"
        lines.append(
            f"{r.name:<22} {r.trials:>6} {r.wall_s:>8.1f} {r.per_s:>9.2f} {r.cpu_s:>13.1f} "
            f"{1000 * r.cpu_s / r.trials:>13.1f} {ratio_wall:>7} {ratio_cpu:>6}"
        )
    return "\n".join(lines)


def _postgres_db(base: str) -> tuple[str, Any]:
    """A fresh database on the server ``base`` points at, and a function that drops it."""
    from sqlalchemy import create_engine, text

    name = f"paretune_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return base.rsplit("/", 1)[0] + "/" + name, drop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "PARETUNE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--skip-optuna", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)

    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    if __name__ != "__main__":  # imported (tests): Ray workers cannot import this file
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runs: list[Run] = []
    baseline = None
    with tempfile.TemporaryDirectory(prefix="paretune-overhead-") as tmp:
        try:
            if not args.skip_optuna:
                baseline = run_optuna_search(args.trials, args.concurrency, tmp)
                runs.append(baseline)
            if not args.skip_sqlite:
                url = f"sqlite:///{Path(tmp) / 'overhead.db'}"
                runs.append(run_paretune(url, args.trials, args.concurrency, tmp))
            try:
                url, drop = _postgres_db(args.postgres)
            except Exception as e:  # no server: say so and go on
                print(f"PostgreSQL skipped: {type(e).__name__}: {str(e).splitlines()[0]}")
            else:
                try:
                    runs.append(run_paretune(url, args.trials, args.concurrency, tmp))
                finally:
                    drop()
        finally:
            ray.shutdown()
    print(
        f"{args.trials} trials, {args.concurrency} at once, 2 reports x 3 metrics each, "
        f"{os.cpu_count()} CPUs"
    )
    print(table(runs, baseline))


if __name__ == "__main__":
    main()
