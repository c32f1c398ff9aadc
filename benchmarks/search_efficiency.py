"""Search efficiency: paretune's multi-objective multi-fidelity search against Optuna and Ray Tune.

    python benchmarks/search_efficiency.py [--quick] [--seeds 10] [--budget 40] [--out DIR] [--service]

``--quick``: 3 seeds, a budget of 10 trainings.

Two test problems with a known Pareto front (``benchmarks/problems.py``): a multi-fidelity DTLZ2
and a LoRA-search surrogate with crossing learning curves. Every method gets the same compute, a
budget of training steps (``--budget`` full-fidelity trainings' worth), on each of ``--seeds``
seeds:

- ``paretune mo-hyperband+tpe`` and ``paretune mo-asha+tpe``: paretune's scheduler core
  (:mod:`paretune.search.algorithms.schedulers`) and its fidelity-aware sampler
  (:mod:`paretune.search.algorithms.fidelity`), driven in-process exactly as the searcher drives them: ask
  (enqueue into the real study), evaluate at each rung, report, tell COMPLETE or PRUNED;
- ``optuna tpe (full fidelity)``: Optuna's multi-objective TPE (paretune's settings), every trial
  trained to ``max_steps``;
- ``ray optuna+asha``: what a Ray Tune user gets, run through real Ray Tune: ``OptunaSearch`` with
  ``metric=[...]``, ``mode=[...]`` and ``ASHAScheduler`` on the first objective;
- ``random (full fidelity)``.

Scoring. A method's answer is the Pareto set it reports: paretune and Optuna report the
non-dominated COMPLETE trials by their observed (noisy) values; ``OptunaSearch`` records a trial
that ASHA stopped early as COMPLETE with its partly trained values, so a Ray user's reported set is
the non-dominated set of every trial's last reported values, low-fidelity points included. Each
configuration in a reported set is scored by its TRUE full-fidelity values (noise-free, at
``max_steps``); the hypervolume of those points is divided by the true front's (1 is the true
front). A partly trained member would need its remaining training to hold those values, so the
Ray row adds that training to its compute; the row ``ray optuna+asha, as delivered`` scores each
member as trained instead. The curve is the score after each finished trial against compute;
``claimed`` is the final hypervolume of the values the reported set shows.

Printed per problem: the median normalised hypervolume at 10%, 25%, 50% and 100% of the budget,
and the median compute (as a fraction of the budget) each method needs to reach the median final
hypervolume of Optuna TPE at full fidelity ("inf" when at least half the seeds never get there).
A PNG plot goes to ``--out`` (default ``benchmarks/out``). The last line reads
``paretune_compute_to_match_optuna_tpe: X``, X being that fraction for mo-hyperband+tpe on the
LoRA problem.

``--service`` also runs paretune once (one seed, the LoRA problem) through the real service path:
the store, the driver, Ray Tune with paretune's searcher and scheduler, a trial function that
answers with the surrogate, and prints the same numbers for that run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from problems import PROBLEMS, Problem  # noqa: E402

from paretune.search.algorithms.fidelity import FidelityAwareAsker  # noqa: E402
from paretune.search.algorithms.pareto import dominates  # noqa: E402
from paretune.search.algorithms.samplers import make_sampler  # noqa: E402

log = logging.getLogger("search_efficiency")

FRACTIONS = (0.10, 0.25, 0.50, 1.00)
PARETUNE_HB = "paretune mo-hyperband+tpe"
PARETUNE_ASHA = "paretune mo-asha+tpe"
OPTUNA_TPE = "optuna tpe (full fidelity)"
RAY = "ray optuna+asha"
RAY_DELIVERED = "ray optuna+asha, as delivered"
RANDOM = "random (full fidelity)"
METHODS = (PARETUNE_HB, PARETUNE_ASHA, OPTUNA_TPE, RAY, RANDOM)
ROWS = (PARETUNE_HB, PARETUNE_ASHA, OPTUNA_TPE, RAY, RAY_DELIVERED, RANDOM)
FINAL_KEY = "paretune_compute_to_match_optuna_tpe"
MAIN_PROBLEM = "peft-lora"


# -- scoring --------------------------------------------------------------------------------------


def noise_rng(seed: int, params: dict[str, Any], step: int) -> np.random.Generator:
    """The same configuration at the same step gets the same noise in every method."""
    key = zlib.crc32(repr(sorted(params.items())).encode())
    return np.random.default_rng([seed, key, step])


@dataclass
class Member:
    point: list[float]  # observed values, minimisation form
    params: dict[str, Any]
    step: int  # the fidelity the configuration was trained to


class ReportedFront:
    """A method's reported Pareto set (by observed values) and its true normalised hypervolume.

    ``score`` counts every member at full fidelity; ``delivered`` counts each at the fidelity it
    was trained to (the adapter the user holds). ``completion`` is the training still owed to
    hold every member trained to full fidelity. The three differ only for a method that reports
    partly trained configurations, as OptunaSearch reports the trials ASHA stopped.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.members: list[Member] = []
        self.score = 0.0
        self.delivered = 0.0

    def add(
        self, params: dict[str, Any], observed: dict[str, float], step: int | None = None
    ) -> None:
        point = self.problem.min_form(observed)
        if any(dominates(m.point, point) or m.point == point for m in self.members):
            return
        self.members = [m for m in self.members if not dominates(point, m.point)]
        self.members.append(Member(point, params, self.problem.max_steps if step is None else step))
        configs = [m.params for m in self.members]
        self.score = self.problem.normalised_hypervolume(configs)
        self.delivered = self.problem.normalised_hypervolume(
            configs, [m.step for m in self.members]
        )

    @property
    def completion(self) -> int:
        return sum(self.problem.max_steps - m.step for m in self.members)

    @property
    def claimed(self) -> float:
        """The normalised hypervolume the reported values claim (what the user is shown)."""
        points = [m.point for m in self.members]
        return self.problem.raw_hypervolume(points) / self.problem.front_hypervolume


@dataclass
class Curve:
    """(compute, score) after each finished trial: compute spent plus the training the reported
    set still owes (0 for every method whose reported set is fully trained)."""

    budget: int
    compute: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    n_trials: int = 0
    n_complete: int = 0
    claimed: float = 0.0  # the final reported set's hypervolume by its reported values

    def add(self, compute: int, score: float) -> None:
        self.compute.append(compute)
        self.score.append(score)

    def at(self, fraction: float) -> float:
        """The score of the last answer deliverable within ``fraction`` of the budget."""
        limit = fraction * self.budget + 1e-9
        return next(
            (
                s
                for c, s in zip(reversed(self.compute), reversed(self.score), strict=True)
                if c <= limit
            ),
            0.0,
        )

    def compute_to_reach(self, target: float) -> float:
        """The least compute (fraction of the budget) at which an answer scores ``target``."""
        hits = [c for c, s in zip(self.compute, self.score, strict=True) if s >= target - 1e-12]
        return min(hits) / self.budget if hits else math.inf


# -- methods run in-process -------------------------------------------------------------------------


def _optuna() -> Any:
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def run_paretune(
    problem: Problem,
    seed: int,
    budget: int,
    *,
    scheduler: str = "mo-hyperband",
    sampler_fidelity: str = "highest-rung",
    sampler: str = "tpe",
    core: Any = None,
    min_observations: int | None = None,
) -> Curve:
    """paretune's scheduler core and fidelity-aware sampler, one trial at a time.

    ``core`` (any object with ``on_result``) replaces the scheduler and ``min_observations`` the
    asker's threshold: the knobs the design experiments in docs/search.md turned.
    """
    from paretune.search.algorithms.schedulers import MOHyperband, MOSuccessiveHalving  # noqa: PLC0415

    optuna = _optuna()
    rungs, objectives, directions = problem.rungs(), problem.objectives, problem.directions
    if core is None and scheduler == "mo-hyperband":
        core = MOHyperband(rungs, objectives, directions, eta=problem.eta, seed=seed)
    elif core is None:
        core = MOSuccessiveHalving(rungs, objectives, directions, eta=problem.eta)
    asker = FidelityAwareAsker(
        rungs=rungs,
        objectives=objectives,
        directions=directions,
        sampler=sampler,
        seed=seed,
        mode=sampler_fidelity,  # type: ignore[arg-type]
        min_observations=min_observations,
        known=getattr(problem, "trainable_params", None),  # as the service counts a plan's
    )
    study = optuna.create_study(
        directions=list(directions), sampler=make_sampler(sampler, seed=seed)
    )
    front, curve, compute = ReportedFront(problem), Curve(budget), 0
    while compute < budget:
        trial = asker.ask(study, problem.sample)
        params = problem.sample(trial)
        done, values, over = 0, None, False
        for step in rungs:
            compute += step - done
            done = step
            if compute > budget:
                over = True
                break
            values = problem.observe(params, step, noise_rng(seed, params, step))
            asker.observe(trial, step, values)
            if core.on_result(trial.number, step, values) == "stop":
                break
        asker.finish(trial.number)
        if over:
            break
        curve.n_trials += 1
        if done == problem.max_steps and values is not None:
            study.tell(trial, [values[o] for o in objectives])
            front.add(params, values)
            curve.n_complete += 1
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        curve.add(compute, front.score)
    curve.claimed = front.claimed
    return curve


def run_full_fidelity(problem: Problem, seed: int, budget: int, *, sampler: str = "tpe") -> Curve:
    """Every trial trained to max_steps: Optuna's multi-objective TPE, or random search."""
    optuna = _optuna()
    study = optuna.create_study(
        directions=list(problem.directions), sampler=make_sampler(sampler, seed=seed)
    )
    front, curve, compute = ReportedFront(problem), Curve(budget), 0
    while compute + problem.max_steps <= budget:
        trial = study.ask()
        params = problem.sample(trial)
        values = problem.observe(
            params, problem.max_steps, noise_rng(seed, params, problem.max_steps)
        )
        compute += problem.max_steps
        study.tell(trial, [values[o] for o in problem.objectives])
        front.add(params, values)
        curve.n_trials += 1
        curve.n_complete += 1
        curve.add(compute, front.score)
    curve.claimed = front.claimed
    return curve


# -- Ray Tune: OptunaSearch + ASHAScheduler ----------------------------------------------------------


def ray_env() -> None:
    """Quiet, local, no usage stats; Ray's workers import ``problems`` from this folder too."""
    here = str(Path(__file__).resolve().parent)
    paths = [here, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100000")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
    os.environ.setdefault("RAY_ADDRESS", "local")  # a Ray of our own, never another one here


@dataclass(frozen=True)
class DefineByRun:
    """The problem's space for OptunaSearch (module level: Tune pickles its searcher)."""

    problem: Problem

    def __call__(self, trial: Any) -> None:
        self.problem.sample(trial)


def problem_params(problem: Problem, config: dict[str, Any]) -> dict[str, Any]:
    """The problem's parameters of a Tune config (the values the sampler suggested)."""
    import optuna  # noqa: PLC0415

    return problem.sample(optuna.trial.FixedTrial(dict(config)))


def run_ray(problem: Problem, seed: int, budget: int, storage: str) -> tuple[Curve, Curve]:
    """Ray Tune's OptunaSearch (multi-objective) with ASHA on the first objective, in-process Ray."""
    from ray import tune  # noqa: PLC0415
    from ray.tune.schedulers import ASHAScheduler  # noqa: PLC0415
    from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415

    _optuna()
    rungs = problem.rungs()
    modes = ["max" if d == "maximize" else "min" for d in problem.directions]
    events: list[tuple[str, int, dict[str, Any], dict[str, float]]] = []

    def trainable(config: dict[str, Any]) -> None:
        params = problem_params(problem, config)
        for step in rungs:
            values = problem.observe(params, step, noise_rng(seed, params, step))
            tune.report({"step": step, **values})

    class Spent(tune.Stopper):
        """Stops the experiment once the training steps reported reach the budget."""

        def __init__(self) -> None:
            self.steps: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            self.steps[trial_id] = int(result["step"])
            return False

        def stop_all(self) -> bool:
            return sum(self.steps.values()) >= budget

    class Record(tune.Callback):
        def on_trial_result(
            self, iteration: int, trials: Any, trial: Any, result: dict[str, Any], **info: Any
        ) -> None:
            values = {o: float(result[o]) for o in problem.objectives}
            events.append(
                (trial.trial_id, int(result["step"]), problem_params(problem, trial.config), values)
            )

    searcher = OptunaSearch(
        space=DefineByRun(problem), metric=list(problem.objectives), mode=modes, seed=seed
    )
    scheduler = ASHAScheduler(
        time_attr="step",
        metric=problem.objectives[0],
        mode=modes[0],
        max_t=problem.max_steps,
        grace_period=problem.min_steps,
        reduction_factor=problem.eta,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=100_000,
            max_concurrent_trials=1,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            name=f"ray-{problem.name}-{seed}",
            verbose=0,
            stop=Spent(),
            callbacks=[Record()],
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0),
        ),
    )
    tuner.fit()
    return _ray_curves(problem, events, budget)


def _ray_curves(
    problem: Problem,
    events: Sequence[tuple[str, int, dict[str, Any], dict[str, float]]],
    budget: int,
) -> tuple[Curve, Curve]:
    """Replay the results in arrival order (one trial at a time; a trial ends at its last result).

    Two scores of the reported set: every member at its true full-fidelity values, the training
    that needs charged to the compute; and each member as delivered (trained as far as ASHA let it).
    """
    last: dict[str, tuple[int, dict[str, Any], dict[str, float]]] = {}
    for trial_id, step, config, values in events:
        last[trial_id] = (step, config, values)  # dicts keep the order trials started in
    front, compute = ReportedFront(problem), 0
    completed, delivered = Curve(budget), Curve(budget)
    for step, config, values in last.values():
        compute += step
        if compute > budget:
            break
        front.add(config, values, step)  # OptunaSearch tells them COMPLETE, partial or not
        for curve in (completed, delivered):
            curve.n_trials += 1
            curve.n_complete += step == problem.max_steps
        completed.add(compute + front.completion, front.score)
        delivered.add(compute, front.delivered)
    completed.claimed = delivered.claimed = front.claimed
    return completed, delivered


# -- running everything ---------------------------------------------------------------------------


@dataclass
class Settings:
    seeds: int
    budget_trainings: int
    problems: tuple[str, ...]
    methods: tuple[str, ...]
    sampler_fidelity: str
    out: Path
    jobs: int = 2


def run_in_process(method: str, name: str, seed: int, settings: Settings) -> Curve:
    """One in-process run (a process-pool job: module level, plain arguments)."""
    problem = PROBLEMS[name]()
    budget = settings.budget_trainings * problem.max_steps
    if method in (PARETUNE_HB, PARETUNE_ASHA):
        scheduler = "mo-hyperband" if method == PARETUNE_HB else "mo-asha"
        return run_paretune(
            problem, seed, budget, scheduler=scheduler, sampler_fidelity=settings.sampler_fidelity
        )
    if method in (OPTUNA_TPE, RANDOM):
        sampler = "tpe" if method == OPTUNA_TPE else "random"
        return run_full_fidelity(problem, seed, budget, sampler=sampler)
    raise ValueError(f"not an in-process method: {method}")


def run_all(settings: Settings) -> dict[str, dict[str, list[Curve]]]:
    """Curves by problem, method and seed: in-process runs in a process pool while Ray runs here.

    Ray starts first, on a quiet machine (its node start-up has a fixed 30 s limit); the pool
    spawns its processes (no fork of a process with Ray's threads in it).
    """
    in_process = [m for m in settings.methods if m != RAY]
    jobs = [(m, n, s) for n in settings.problems for m in in_process for s in range(settings.seeds)]
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        storage = stack.enter_context(tempfile.TemporaryDirectory(prefix="paretune-bench-ray-"))
        if RAY in settings.methods:
            stack.enter_context(local_ray())
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=settings.jobs, mp_context=mp.get_context("spawn"))
        )
        futures = [pool.submit(run_in_process, m, n, s, settings) for m, n, s in jobs]
        ray_curves = run_ray_all(settings, storage) if RAY in settings.methods else {}
        curves = [f.result() for f in futures]
    log.info("%d in-process runs and the Ray runs in %.0fs", len(jobs), time.perf_counter() - start)
    results: dict[str, dict[str, list[Curve]]] = {n: {} for n in settings.problems}
    for (m, n, _), curve in zip(jobs, curves, strict=True):
        results[n].setdefault(m, []).append(curve)
    for n, pairs in ray_curves.items():
        results[n][RAY] = [completed for completed, _ in pairs]
        results[n][RAY_DELIVERED] = [delivered for _, delivered in pairs]
    return results


@contextlib.contextmanager
def local_ray(attempts: int = 3) -> Iterator[None]:
    """A local Ray of our own (2 CPUs at most), shut down afterwards; retried when start-up
    times out on a busy machine."""
    ray_env()
    import ray  # noqa: PLC0415

    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                address="local",
                num_cpus=min(2, os.cpu_count() or 1),
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
                _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
            )
            break
        except Exception as e:  # Ray raises a bare Exception when its node is slow to start
            ray.shutdown()
            if attempt == attempts:
                raise
            log.warning("Ray did not start (%s); trying again", e)
            time.sleep(5)
    try:
        yield
    finally:
        ray.shutdown()


def run_ray_all(settings: Settings, storage: str) -> dict[str, list[tuple[Curve, Curve]]]:
    """Every Ray run, on the Ray started by :func:`local_ray`."""
    out: dict[str, list[tuple[Curve, Curve]]] = {}
    for name in settings.problems:
        problem = PROBLEMS[name]()
        budget = settings.budget_trainings * problem.max_steps
        start = time.perf_counter()
        out[name] = [run_ray(problem, seed, budget, storage) for seed in range(settings.seeds)]
        log.info(
            "%s / %s: %d seeds in %.1fs", name, RAY, settings.seeds, time.perf_counter() - start
        )
    return out


# -- summary, table, plot -------------------------------------------------------------------------


@dataclass
class Summary:
    at: dict[float, float]
    finals: list[float]  # each seed's hypervolume at the whole budget
    per_seed_to_match: list[float]  # empty without a target
    to_match: float
    n_trials: float
    n_complete: float
    claimed: float


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def summarise(curves_by_method: dict[str, list[Curve]]) -> tuple[float, dict[str, Summary]]:
    target = median([c.score[-1] if c.score else 0.0 for c in curves_by_method.get(OPTUNA_TPE, [])])
    out = {}
    for method, curves in curves_by_method.items():
        per_seed = [] if math.isnan(target) else [c.compute_to_reach(target) for c in curves]
        out[method] = Summary(
            at={f: median([c.at(f) for c in curves]) for f in FRACTIONS},
            finals=[c.at(1.0) for c in curves],
            per_seed_to_match=per_seed,
            to_match=median(per_seed),
            n_trials=median([c.n_trials for c in curves]),
            n_complete=median([c.n_complete for c in curves]),
            claimed=median([c.claimed for c in curves]),
        )
    return target, out


def median_interval(
    xs: Sequence[float], level: float = 0.9, draws: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap interval of the median of ``xs`` (resampled with replacement, seeded): how far
    the median of this many seeds moves with the draw of seeds. ``inf`` entries sort last."""
    values = np.asarray(xs, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(draws, len(values)), replace=True), axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2], method="lower")
    return float(lo), float(hi)


def print_spread(per_seed: Sequence[float]) -> None:
    """Each seed's compute to match for mo-hyperband on the LoRA problem, and how precise their
    median is."""
    lo, hi = median_interval(per_seed)
    print(
        f"\n{PARETUNE_HB} on {MAIN_PROBLEM}, compute to match per seed: "
        + " ".join(fmt_fraction(x) for x in per_seed)
        + f"; 90% bootstrap interval of their median: {fmt_fraction(lo)} .. {fmt_fraction(hi)}"
    )


def print_finals(name: str, summary: dict[str, Summary]) -> None:
    """Each method's median final hypervolume with a 90 % bootstrap interval over its seeds, and
    whether mo-hyperband's median is at least every baseline's: with ten seeds the intervals of
    close methods overlap, and this line says so instead of leaving it to the reader."""
    if PARETUNE_HB not in summary:
        return
    parts = []
    for method in [m for m in ROWS if m in summary and summary[m].finals]:
        lo, hi = median_interval(summary[method].finals)
        parts.append(f"{method} {summary[method].at[1.0]:.4f} ({lo:.4f} .. {hi:.4f})")
    ours = summary[PARETUNE_HB].at[1.0]  # the median of ``finals``, as the table's last column
    baselines = [m for m in (OPTUNA_TPE, RAY, RANDOM) if m in summary and summary[m].finals]
    behind = [m for m in baselines if summary[m].at[1.0] > ours]
    verdict = "at least every baseline's" if not behind else "below " + ", ".join(behind)
    print(f"\n{name}, final hv, median (90% bootstrap interval): " + "; ".join(parts))
    print(f"{name}: {PARETUNE_HB}'s median final hv is {verdict}")


def fmt_fraction(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.2f}"


def print_table(
    name: str, budget: int, target: float, summary: dict[str, Summary], seeds: int
) -> None:
    print(
        f"\n{name}: budget {budget} training steps, {seeds} seeds, medians; target = optuna tpe final hv {target:.4f}"
    )
    head = f"{'method':<30}" + "".join(f"{'hv@' + str(int(f * 100)) + '%':>9}" for f in FRACTIONS)
    print(head + f"{'claimed':>9}{'to match':>10}{'trials':>8}{'complete':>10}")
    for method in [m for m in ROWS if m in summary] + [m for m in summary if m not in ROWS]:
        s = summary[method]
        row = f"{method:<30}" + "".join(f"{s.at[f]:>9.4f}" for f in FRACTIONS)
        row += f"{s.claimed:>9.4f}{fmt_fraction(s.to_match):>10}"
        print(row + f"{s.n_trials:>8.0f}{s.n_complete:>10.0f}")


def plot(results: dict[str, dict[str, list[Curve]]], path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log.warning("matplotlib is missing: no plot (pip install matplotlib)")
        return None
    grid = np.linspace(0.02, 1.0, 50)
    fig, axes = plt.subplots(1, len(results), figsize=(6.0 * len(results), 4.2), squeeze=False)
    for ax, (name, by_method) in zip(axes[0], results.items(), strict=True):
        for method in [m for m in ROWS if m in by_method]:
            ys = np.array([[c.at(f) for f in grid] for c in by_method[method]])
            ax.plot(grid, np.median(ys, axis=0), label=method)
            ax.fill_between(
                grid, np.percentile(ys, 25, axis=0), np.percentile(ys, 75, axis=0), alpha=0.15
            )
        ax.set_title(name)
        ax.set_xlabel("compute (fraction of the budget, training steps)")
        ax.set_ylabel("true hypervolume / true front's")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the service path -----------------------------------------------------------------------------


SERVICE_SEED = 0


@dataclass(frozen=True)
class SurrogateTrial:
    """A paretune trial function that trains nothing: it answers with the LoRA surrogate."""

    problem: Problem
    seed: int = SERVICE_SEED

    def __call__(
        self,
        spec: Any,
        config: Any,
        reporter: Any,
        *,
        max_steps: int,
        eval_steps: Sequence[int],
        trial_dir: str | None = None,
    ) -> dict[str, float]:
        params = surrogate_params(config.plan, config.hparams.learning_rate)
        for step in eval_steps:
            values = self.problem.observe(params, step, noise_rng(self.seed, params, step))
            if not reporter(step, {"accuracy": values["accuracy"]}):
                break
        return {}


def surrogate_params(plan: Any, learning_rate: float) -> dict[str, Any]:
    """The surrogate's parameters of a paretune plan: a rank per (layer, target) and log10 lr."""
    from problems import LAYERS, TARGETS  # noqa: PLC0415

    params: dict[str, Any] = {f"r.L{layer}.{t}": 0 for layer in range(LAYERS) for t in TARGETS}
    lora = plan.get("lora") if hasattr(plan, "get") else None
    for layer, target, rank in lora.ranks if lora else ():
        params[f"r.L{layer}.{target}"] = int(rank)
    params["log_lr"] = math.log10(learning_rate)
    return params


def service_spec(name: str, n_trials: int, sampler_fidelity: str) -> str:
    from problems import LOG_LR, RANKS, PeftSurrogate  # noqa: PLC0415

    p = PeftSurrogate()
    lines = [
        f"study: {name}",
        "model: minilm-l6",
        "task: {dataset: synthetic}",
        "objectives: [accuracy, trainable_params]",
        "space:",
        f"  lora: {{targets: [query, value], ranks: {list(RANKS)}}}",
        f"  learning_rate: {{low: {10 ** LOG_LR[0]!r}, high: {10 ** LOG_LR[1]!r}, log: true}}",
        "search:",
        f"  n_trials: {n_trials}",
        f"  min_steps: {p.min_steps}",
        f"  max_steps: {p.max_steps}",
        f"  eta: {p.eta}",
        "  scheduler: mo-hyperband",
        "  sampler: tpe",
        f"  sampler_fidelity: {sampler_fidelity}",
        "  max_concurrent: 1",
        f"  seed: {SERVICE_SEED}",
    ]
    return "\n".join(lines) + "\n"


def run_service(settings: Settings) -> Curve | None:
    """paretune once through the real service: store, driver, Ray Tune, searcher and scheduler.

    One seed of the LoRA problem; the trial function answers with the surrogate. None (with a
    line saying why) when the service path is not available in this checkout.
    """
    try:
        from paretune.search.service import lifecycle as service  # noqa: PLC0415
        from paretune.search.service.driver import DriverOptions  # noqa: PLC0415
        from paretune.search.store.study_store import open_store  # noqa: PLC0415
        from paretune.spaces import parse_spec  # noqa: PLC0415
    except ImportError as e:
        print(f"--service: the Ray service path is not available here ({e}); skipped")
        return None
    ray_env()  # Ray's workers import problems and this module by path
    # ray_env turns Tune's result loggers off (the in-process rows need none), so at the end Tune
    # warns once per trial that it found no result.json; the service keeps its results in the store
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.CRITICAL)
    import optuna  # noqa: PLC0415

    problem = PROBLEMS[MAIN_PROBLEM]()
    budget = settings.budget_trainings * problem.max_steps
    name = "search-efficiency-service"
    n_trials = 4 * settings.budget_trainings  # enough trials to spend the budget; the rest is cut
    with tempfile.TemporaryDirectory(prefix="paretune-bench-service-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'service.db'}"
        loaded = parse_spec(service_spec(name, n_trials, settings.sampler_fidelity), f"{name}.yaml")
        start = time.perf_counter()
        outcome = service.submit(
            loaded,
            storage=url,
            trial_fn=SurrogateTrial(problem),
            options=DriverOptions(
                num_cpus=min(2, os.cpu_count() or 1), run_dir=str(Path(tmp) / "runs")
            ),
        )
        seconds = time.perf_counter() - start
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        store = open_store(url)
        last_step: dict[int, int] = {}
        for row in store.metrics(store.get_study(name).id):
            last_step[row["trial_number"]] = max(last_step.get(row["trial_number"], 0), row["step"])
        store.dispose()
    print(f"--service: {outcome.status} in {seconds:.0f}s: {outcome.message}")
    return _service_curve(problem, trials, last_step, budget)


def _service_curve(
    problem: Problem, trials: Sequence[Any], last_step: dict[int, int], budget: int
) -> Curve:
    """Replay the stored study in the order trials finished, as the in-process runs are scored."""
    import optuna  # noqa: PLC0415

    ended = [t for t in trials if t.datetime_complete is not None and t.number in last_step]
    front, curve, compute = ReportedFront(problem), Curve(budget), 0
    for t in sorted(ended, key=lambda t: t.datetime_complete):
        compute += last_step[t.number]
        if compute > budget:
            break
        curve.n_trials += 1
        if t.state == optuna.trial.TrialState.COMPLETE:
            params = surrogate_params(_plan(t), t.params["learning_rate"])
            observed = {"accuracy": t.values[0], "trainable_params": t.values[1]}
            front.add(params, observed)
            curve.n_complete += 1
        curve.add(compute, front.score)
    curve.claimed = front.claimed
    return curve


def _plan(trial: Any) -> Any:
    from paretune.spaces import PeftPlan  # noqa: PLC0415

    return PeftPlan.from_dict(trial.user_attrs["plan"])


# -- command line ---------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smaller run (3 seeds, a budget of 10): a smoke test",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds per method (default 10; quick 3)")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="budget in full-fidelity trainings (default 40; quick 10)",
    )
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--sampler-fidelity", default="highest-rung", choices=["full", "highest-rung"])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for in-process runs",
    )
    p.add_argument(
        "--service", action="store_true", help="also run paretune once through the real Ray service"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=os.environ.get("PARETUNE_LOG_LEVEL", "WARNING"), format="%(message)s")
    settings = Settings(
        seeds=args.seeds or (3 if args.quick else 10),
        budget_trainings=args.budget or (10 if args.quick else 40),
        problems=tuple(args.problems),
        methods=tuple(args.methods),
        sampler_fidelity=args.sampler_fidelity,
        out=args.out,
        jobs=args.jobs,
    )
    start = time.perf_counter()
    results = run_all(settings)
    final = math.nan
    for name, by_method in results.items():
        budget = settings.budget_trainings * PROBLEMS[name]().max_steps
        target, summary = summarise(by_method)
        print_table(name, budget, target, summary, settings.seeds)
        print_finals(name, summary)
        if name == MAIN_PROBLEM and PARETUNE_HB in summary:
            final = summary[PARETUNE_HB].to_match
            if summary[PARETUNE_HB].per_seed_to_match:
                print_spread(summary[PARETUNE_HB].per_seed_to_match)
    path = plot(
        results,
        settings.out / ("search_efficiency_quick.png" if args.quick else "search_efficiency.png"),
    )
    if path is not None:
        print(f"\nplot: {path}")
    if args.service:
        curve = run_service(settings)
        if curve is not None:
            name = MAIN_PROBLEM
            budget = settings.budget_trainings * PROBLEMS[name]().max_steps
            by_method = {**results.get(name, {}), "paretune via service (1 seed)": [curve]}
            target, summary = summarise(by_method)
            print_table(f"{name} through the service", budget, target, summary, 1)
    print(f"wall time: {time.perf_counter() - start:.0f}s")
    print(f"{FINAL_KEY}: {fmt_fraction(final)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
