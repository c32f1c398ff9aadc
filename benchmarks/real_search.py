"""Real-task search: paretune's front against TPE, random search and hand-picked adapters.

    python benchmarks/real_search.py [--quick] [--datasets vader-movies,...] [--seeds 1]
                                     [--first-seed 0] [--budget 16] [--steps 60]
                                     [--workers 2] [--out FILE]

Every number here is a real fine-tune of minilm-l6 (no surrogate) on built-in data sets of real
text (the VADER sentiment snippets: movie reviews, tweets, Amazon reviews), objectives
``[accuracy, trainable_params]``, the ``mixed`` space (:mod:`paretune.spaces.combine`) with a
learning rate in [3e-4, 3e-2] (log), batch 32. Each method gets the same compute on each data set
and seed: ``--budget`` full trainings' worth of training steps (``--budget`` x ``--steps``):

- ``paretune``: the study's defaults, mo-hyperband (eta 3, rungs ``steps/3`` and ``steps``) with
  the fidelity-aware TPE asker and the ``mixed`` start-up trials, driven in-process exactly as the
  searcher drives them (ask into the real study, report each rung, tell COMPLETE or PRUNED); a
  trial the budget cannot finish is stopped at its last affordable rung (PRUNED);
- ``optuna tpe``: Optuna's multi-objective TPE with paretune's sampler settings, every trial
  trained to ``--steps``;
- ``random``: Optuna's RandomSampler, every trial trained to ``--steps``;
- hand-picked adapters, each trained at ``--steps`` with the best of three learning rates
  (1e-3, 3e-3, 1e-2) on the validation split, as a practitioner would pick them: LoRA r8 on
  query,value (all layers), LoRA r16 on every projection, IA3, BitFit, serial adapter 64,
  parallel adapter 64 (scaling 4).

Every choice (the front, a baseline's learning rate) is made on the validation split. Scoring is on
the test split: each front member and each chosen baseline is scored by its mean test accuracy over
``--test-seeds`` trainings (its own, then retrains whose only change is the seed, as
``paretune export --retrain`` does). Per data set the script prints each baseline and whether
paretune's test-scored front dominates it (a point with at least its test accuracy at no more
parameters), matches it (within 0.5 accuracy points at no more parameters) or loses; and each
method's test hypervolume in (test accuracy, log10 trainable parameters) with the reference point
(majority-class rate of the test split, log10 of the space's largest plan). The last two lines:

    real_search_baselines_beaten: K/N      (dominated or matched, over all data sets and seeds)
    real_search_hv_ratio_vs_tpe: X         (paretune's over TPE's, median over data sets and seeds)

``--quick`` (one data set, one seed, a budget of 4 trainings of 12 steps on a few hundred
examples, one learning rate per baseline): a smoke run of the whole pipeline in under 3 minutes;
its figures mean nothing.
Progress goes to stderr; ``--out`` writes every trial as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("vader-movies", "vader-tweets", "vader-amazon")
PARETUNE, TPE, RANDOM = "paretune", "optuna tpe", "random"
SEARCHES = (PARETUNE, TPE, RANDOM)
HAND_PICKED = "hand-picked"
BASELINE_RATES = (1e-3, 3e-3, 1e-2)
MATCH_POINTS = 0.5  # accuracy points
BASELINES: dict[str, dict[str, Any]] = {
    "LoRA r8 q,v": {"lora": {"targets": ["query", "value"], "ranks": [8], "mode": "all"}},
    "LoRA r16 all projections": {
        "lora": {
            "targets": ["query", "key", "value", "attention_output", "intermediate", "output"],
            "ranks": [16],
            "mode": "all",
        }
    },
    "IA3": {"ia3": {"mode": "all"}},
    "BitFit": {"bitfit": {"mode": "all"}},
    "serial adapter 64": {"serial_adapter": {"sizes": [64], "mode": "all"}},
    "parallel adapter 64": {"parallel_adapter": {"sizes": [64], "mode": "all", "scaling": 4.0}},
}


@dataclass(frozen=True)
class Settings:
    steps: int = 60
    budget: int = 16  # full trainings' worth of steps per method
    max_length: int = 64
    val_size: int = 500
    test_size: int = 1000
    train_size: int | None = None  # cap on training examples (``--quick``)
    test_seeds: int = 3
    baseline_rates: tuple[float, ...] = BASELINE_RATES  # the practitioner's grid

    @property
    def min_steps(self) -> int:
        return max(1, self.steps // 3)

    @property
    def compute(self) -> int:
        return self.budget * self.steps


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- specs -----------------------------------------------------------------------------------------


def spec_text(dataset: str, settings: Settings, space: dict[str, Any], seed: int = 0) -> str:
    """The YAML of a study on ``dataset`` with ``space`` (its families; rates and batch added)."""
    task: dict[str, Any] = {
        "dataset": dataset,
        "max_length": settings.max_length,
        "val_size": settings.val_size,
        "test_size": settings.test_size,
        "seed": 0,
    }
    if settings.train_size is not None:
        task["train_size"] = settings.train_size
    doc = {
        "study": f"real-{dataset}-{seed}",
        "model": "minilm-l6",
        "task": task,
        "objectives": ["accuracy", "trainable_params"],
        "space": {"batch_size": 32, **space},
        "search": {
            "n_trials": 1000,
            "sampler": "tpe",
            "scheduler": "mo-hyperband",
            "min_steps": settings.min_steps,
            "max_steps": settings.steps,
            "eta": 3,
            "seed": seed,
        },
        "resources": {"cpus": 1},
    }
    return yaml.safe_dump(doc, sort_keys=False)


MIXED = {"preset": "mixed", "learning_rate": {"low": 3e-4, "high": 3e-2, "log": True}}


def load(text: str) -> Any:
    from paretune.spaces import parse_spec  # noqa: PLC0415

    return parse_spec(text).spec


def baseline_spec(dataset: str, settings: Settings, name: str, rate: float) -> Any:
    return load(spec_text(dataset, settings, {**BASELINES[name], "learning_rate": rate}))


# -- one training ----------------------------------------------------------------------------------


def train(
    spec: Any,
    config: Any,
    reporter: Callable[[int, dict[str, float]], bool],
    *,
    test_split: bool,
) -> dict[str, float]:
    from paretune.trainers.run import train_trial  # noqa: PLC0415

    s = spec.search
    return train_trial(
        spec, config, reporter, max_steps=s.max_steps, eval_steps=s.rungs(), test_split=test_split
    )


def trial_record(config: Any, metrics: dict[str, float], steps: int, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "summary": config.plan.summary(),
        "config": config.to_dict(),
        "steps": steps,
        "trainable_params": int(metrics["trainable_params"]),
        "accuracy": metrics.get("accuracy"),
        "test_accuracy": metrics.get("test_accuracy"),
    }


# -- the searches (each a job in a worker process) -------------------------------------------------


def _optuna() -> Any:
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _context(dataset: str, settings: Settings, seed: int) -> tuple[Any, Any]:
    from paretune.search.service.lifecycle import model_dims  # noqa: PLC0415

    spec = load(spec_text(dataset, settings, MIXED, seed))
    return spec, model_dims(spec)


def run_paretune(dataset: str, settings: Settings, seed: int) -> dict[str, Any]:
    """paretune's scheduler core and fidelity-aware asker on real trainings, one at a time."""
    from paretune.search.algorithms.fidelity import N_STARTUP_TRIALS, FidelityAwareAsker  # noqa: PLC0415
    from paretune.search.algorithms.samplers import make_sampler  # noqa: PLC0415
    from paretune.search.algorithms.schedulers import make_core  # noqa: PLC0415
    from paretune.spaces import count_trainable, sample_config, startup_params  # noqa: PLC0415

    optuna = _optuna()
    spec, dims = _context(dataset, settings, seed)
    rungs = spec.search.rungs()
    core = make_core(spec)
    asker = FidelityAwareAsker.from_spec(
        spec,
        known=lambda config: float(count_trainable(config.plan, dims)),
        startup=startup_params(spec, dims, N_STARTUP_TRIALS),
    )
    study = optuna.create_study(
        directions=list(spec.directions), sampler=make_sampler("tpe", seed=seed, group=True)
    )
    objectives = spec.objective_names
    trials: list[dict[str, Any]] = []
    compute, started = 0, time.perf_counter()
    while compute + rungs[0] <= settings.compute:
        trial = asker.ask(study, lambda t: sample_config(t, spec, dims))
        config = sample_config(trial, spec, dims)
        done = [0]
        last: dict[str, float] = {}

        def reporter(
            step: int,
            metrics: dict[str, float],
            trial: Any = trial,
            done: list = done,
            last: dict = last,
        ) -> bool:
            nonlocal compute
            compute += step - done[0]
            done[0] = step
            last.clear()
            last.update(metrics)
            # every reported figure, as the searcher passes Ray's result: eval_loss breaks ties
            values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            asker.observe(trial, step, values)
            if core.on_result(trial.number, step, values) == "stop":
                return False
            following = next((r for r in rungs if r > step), None)
            # the budget cannot pay for the next rung: the trial ends here
            return following is not None and compute + following - step <= settings.compute

        metrics = train(spec, config, reporter, test_split=True)
        asker.finish(trial.number)
        complete = done[0] >= spec.search.max_steps
        if complete:
            study.tell(trial, [float(metrics[o]) for o in objectives])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        record = trial_record(config, {**last, **metrics}, done[0], PARETUNE)
        record["complete"] = complete
        trials.append(record)
        log(
            f"{dataset} seed {seed} {PARETUNE}: trial {trial.number} {record['summary']} "
            f"{done[0]} steps, acc {record['accuracy']:.3f}, compute {compute}/{settings.compute}"
        )
    return {"trials": trials, "compute": compute, "seconds": time.perf_counter() - started}


def run_full_fidelity(dataset: str, settings: Settings, seed: int, method: str) -> dict[str, Any]:
    """Every trial trained to ``steps``: multi-objective TPE or random search."""
    from paretune.search.algorithms.samplers import make_sampler  # noqa: PLC0415
    from paretune.spaces import sample_config  # noqa: PLC0415

    optuna = _optuna()
    spec, dims = _context(dataset, settings, seed)
    sampler = (
        make_sampler("tpe", seed=seed, group=True)
        if method == TPE
        else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(directions=list(spec.directions), sampler=sampler)
    objectives = spec.objective_names
    trials: list[dict[str, Any]] = []
    compute, started = 0, time.perf_counter()
    while compute + settings.steps <= settings.compute:
        trial = study.ask()
        config = sample_config(trial, spec, dims)
        metrics = train(spec, config, lambda step, m: True, test_split=True)
        compute += settings.steps
        study.tell(trial, [float(metrics[o]) for o in objectives])
        record = trial_record(config, metrics, settings.steps, method)
        record["complete"] = True
        trials.append(record)
        log(
            f"{dataset} seed {seed} {method}: trial {trial.number} {record['summary']} "
            f"acc {record['accuracy']:.3f}, compute {compute}/{settings.compute}"
        )
    return {"trials": trials, "compute": compute, "seconds": time.perf_counter() - started}


def run_search(method: str, dataset: str, settings: Settings, seed: int) -> dict[str, Any]:
    _quiet()
    if method == PARETUNE:
        return run_paretune(dataset, settings, seed)
    return run_full_fidelity(dataset, settings, seed, method)


def run_baseline(dataset: str, settings: Settings, name: str, rate: float) -> dict[str, Any]:
    """One hand-picked adapter at one learning rate, trained to ``steps``."""
    _quiet()
    from paretune.search.service.lifecycle import model_dims  # noqa: PLC0415
    from paretune.spaces import sample_config  # noqa: PLC0415

    spec = baseline_spec(dataset, settings, name, rate)
    optuna = _optuna()
    config = sample_config(optuna.create_study().ask(), spec, model_dims(spec))  # one choice each
    started = time.perf_counter()
    metrics = train(spec, config, lambda step, m: True, test_split=True)
    record = trial_record(config, metrics, settings.steps, name)
    record.update(rate=rate, seconds=time.perf_counter() - started)
    log(f"{dataset} {name} lr {rate:g}: acc {record['accuracy']:.3f}")
    return record


def run_retest(dataset: str, settings: Settings, config: dict[str, Any], seed: int) -> dict:
    """``config`` retrained with only its seed changed: its validation and test accuracy."""
    _quiet()
    from paretune.spaces import TrialConfig  # noqa: PLC0415

    spec = load(spec_text(dataset, settings, MIXED))
    base = TrialConfig.from_dict(config)
    retrained = replace(base, hparams=replace(base.hparams, seed=seed))
    metrics = train(spec, retrained, lambda step, m: True, test_split=True)
    return {
        "accuracy": float(metrics["accuracy"]),
        "test_accuracy": float(metrics["test_accuracy"]),
    }


def _quiet() -> None:
    import logging  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    logging.getLogger("paretune").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)


# -- scoring ---------------------------------------------------------------------------------------


def val_score(t: dict[str, Any]) -> float:
    """A trial's validation accuracy: the mean over its seeds once it has been confirmed."""
    return t.get("val_mean", t["accuracy"])


def val_front(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The COMPLETE trials no other COMPLETE trial dominates on (validation accuracy, params):
    what the method reports to its user."""
    done = [t for t in trials if t.get("complete")]

    def dominated(t: dict[str, Any]) -> bool:
        return any(
            val_score(o) >= val_score(t)
            and o["trainable_params"] <= t["trainable_params"]
            and (val_score(o) > val_score(t) or o["trainable_params"] < t["trainable_params"])
            for o in done
        )

    front = [t for t in done if not dominated(t)]
    seen: set[tuple[float, int]] = set()  # equal points: one is enough
    unique = []
    for t in sorted(front, key=lambda t: t["trainable_params"]):
        key = (val_score(t), t["trainable_params"])
        if key not in seen:
            seen.add(key)
            unique.append(t)
    return unique


Retrain = Callable[[Sequence[tuple[str, dict[str, Any]]]], list[list[dict[str, float]]]]


def confirm(t: dict[str, Any], reruns: Sequence[dict[str, float]]) -> None:
    """Fold a trial's seed reruns into its scores: mean validation and the test scores."""
    t["val_scores"] = [t["accuracy"]] + [r["accuracy"] for r in reruns]
    t["test_scores"] = [t["test_accuracy"]] + [r["test_accuracy"] for r in reruns]
    t["val_mean"] = statistics.fmean(t["val_scores"])
    t["test_mean"] = statistics.fmean(t["test_scores"])


def confirmed_fronts(
    runs: dict[Any, tuple[str, Sequence[dict[str, Any]]]], retrain: Retrain
) -> dict[Any, list[dict[str, Any]]]:
    """Each run's validation front, every member confirmed with its seed reruns.

    One training's validation accuracy is noisy (about 2 points at 500 examples), and the front
    of many trials picks the lucky ones: a trial that won on one seed can dominate, and so hide,
    a better one. So, in rounds: take each run's front on the best estimate so far (the seed mean
    where a trial has been rerun, its one score otherwise), rerun the members not yet rerun, and
    recompute, until every member of every front has its seed mean. A trial is rerun at most
    once; the choice stays on validation, the test split only scores."""
    while True:
        fronts = {key: val_front(trials) for key, (_, trials) in runs.items()}
        todo = [
            (runs[key][0], t) for key, front in fronts.items() for t in front if "val_mean" not in t
        ]
        if not todo:
            return fronts
        for (_, t), reruns in zip(todo, retrain(todo), strict=True):
            confirm(t, reruns)


def hypervolume(points: Sequence[tuple[float, int]], ref_acc: float, max_params: int) -> float:
    """Area dominated by (accuracy up, log10 params down) points over (ref_acc, log10 max)."""
    ref_log = math.log10(max_params)
    pts = sorted((math.log10(p), a) for a, p in points if a > ref_acc and math.log10(p) < ref_log)
    area, best = 0.0, ref_acc
    for i, (x, a) in enumerate(pts):
        best = max(best, a)
        x_next = pts[i + 1][0] if i + 1 < len(pts) else ref_log
        area += (x_next - x) * (best - ref_acc)
    return area


def verdict(baseline: tuple[float, int], front: Sequence[tuple[float, int]]) -> str:
    acc, params = baseline
    cheaper = [a for a, p in front if p <= params]
    if any(a >= acc for a in cheaper):
        return "dominated"
    if any(a >= acc - MATCH_POINTS / 100 for a in cheaper):
        return "matched"
    return "loses"


# -- the run ---------------------------------------------------------------------------------------


def majority_rate(dataset: str, settings: Settings) -> float:
    from paretune.spaces import resolve_model  # noqa: PLC0415
    from paretune.trainers.run import task_data  # noqa: PLC0415

    spec = load(spec_text(dataset, settings, MIXED))
    labels = task_data(spec, resolve_model(spec.model.name)).test.labels
    return max(labels.count(k) for k in set(labels)) / len(labels)


def space_max(dataset: str, settings: Settings) -> int:
    from paretune.spaces import describe_space  # noqa: PLC0415

    spec, dims = _context(dataset, settings, 0)
    return describe_space(spec, dims).max_params


def config_key(t: dict[str, Any]) -> str:
    return json.dumps(t["config"]["plan"], sort_keys=True) + json.dumps(
        t["config"]["hparams"], sort_keys=True
    )


def gather(futures: dict[Any, Future[Any]]) -> dict[Any, Any]:
    return {key: f.result() for key, f in futures.items()}


def run(datasets: Sequence[str], seeds: Sequence[int], settings: Settings, workers: int) -> dict:
    started = time.perf_counter()
    context = mp.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        searches = {
            (d, s, m): pool.submit(run_search, m, d, settings, s)
            for m in SEARCHES
            for d in datasets
            for s in seeds
        }
        baselines = {
            (d, name, rate): pool.submit(run_baseline, d, settings, name, rate)
            for d in datasets
            for name in BASELINES
            for rate in settings.baseline_rates
        }
        search_runs, baseline_runs = gather(searches), gather(baselines)
        chosen = {
            (d, name): max(
                (baseline_runs[(d, name, r)] for r in settings.baseline_rates),
                key=lambda t: t["accuracy"],
            )
            for d in datasets
            for name in BASELINES
        }
        log(f"searches and baselines done in {time.perf_counter() - started:.0f} s; retraining")
        reruns: dict[tuple[str, str, int], Future[dict[str, float]]] = {}

        def submit(batch: Sequence[tuple[str, dict[str, Any]]]) -> list[list[Future[Any]]]:
            """Seed reruns of each (data set, trial), one job per new (config, seed)."""
            keys = [(d, config_key(t)) for d, t in batch]
            for (d, t), (_, key) in zip(batch, keys, strict=True):
                for seed in range(1, settings.test_seeds):
                    if (d, key, seed) not in reruns:
                        reruns[(d, key, seed)] = pool.submit(
                            run_retest, d, settings, t["config"], seed
                        )
            return [[reruns[(d, key, s)] for s in range(1, settings.test_seeds)] for d, key in keys]

        def retrain(batch: Sequence[tuple[str, dict[str, Any]]]) -> list[list[dict[str, float]]]:
            results = [[f.result() for f in fs] for fs in submit(batch)]
            log(f"retrained {len(batch)} front members; {len(reruns)} reruns so far")
            return results

        picked = [(d, t) for (d, _), t in chosen.items()]
        baseline_reruns = submit(picked)  # queued first: they run beside the first round
        runs = {key: (key[0], r["trials"]) for key, r in search_runs.items()}
        fronts = confirmed_fronts(runs, retrain)
        for (_, t), fs in zip(picked, baseline_reruns, strict=True):
            confirm(t, [f.result() for f in fs])
    return {
        "searches": {"|".join(map(str, k)): v for k, v in search_runs.items()},
        "fronts": fronts,
        "chosen": chosen,
        "baselines": list(baseline_runs.values()),
        "seconds": time.perf_counter() - started,
    }


def report(result: dict, datasets: Sequence[str], seeds: Sequence[int], settings: Settings) -> None:
    fronts, chosen = result["fronts"], result["chosen"]
    beaten, total, ratios = 0, 0, []
    for d in datasets:
        ref, top = majority_rate(d, settings), space_max(d, settings)
        print(f"\n== {d} (test hypervolume reference: accuracy {ref:.3f}, log10 {top:,} params)")
        base_points = {
            n: (chosen[(d, n)]["test_mean"], chosen[(d, n)]["trainable_params"]) for n in BASELINES
        }
        hv_hand = hypervolume(list(base_points.values()), ref, top)
        for s in seeds:
            points = {
                m: [(t["test_mean"], t["trainable_params"]) for t in fronts[(d, s, m)]]
                for m in SEARCHES
            }
            hvs = {m: hypervolume(points[m], ref, top) for m in SEARCHES}
            print(f"-- seed {s}")
            print(f"{'method':<12} {'front':>5} {'trials':>6} {'minutes':>7} {'test HV':>8}")
            for m in SEARCHES:
                run_ = result["searches"][f"{d}|{s}|{m}"]
                print(
                    f"{m:<12} {len(points[m]):>5} {len(run_['trials']):>6} "
                    f"{run_['seconds'] / 60:>7.1f} {hvs[m]:>8.4f}"
                )
            print(
                f"{HAND_PICKED:<12} {len(base_points):>5} {len(settings.baseline_rates) * len(BASELINES):>6} "
                f"{'':>7} {hv_hand:>8.4f}"
            )
            for m in SEARCHES:
                print(f"   {m} front (test accuracy @ params):")
                for t in fronts[(d, s, m)]:
                    print(
                        f"     {t['test_mean']:.3f} @ {t['trainable_params']:>9,}  "
                        f"(val {t['val_mean']:.3f}) {t['summary']}"
                    )
            ratio = (
                hvs[PARETUNE] / hvs[TPE]
                if hvs[TPE] > 0
                else (1.0 if hvs[PARETUNE] == 0 else math.inf)
            )
            ratios.append(ratio)
            print(f"   paretune / tpe test hypervolume: {ratio:.3f}")
            print(f"   {'baseline':<26} {'lr':>6} {'test acc':>8} {'params':>9}  paretune's front")
            for n, (acc, params) in base_points.items():
                v = verdict((acc, params), points[PARETUNE])
                beaten += v != "loses"
                total += 1
                print(f"   {n:<26} {chosen[(d, n)]['rate']:>6g} {acc:>8.3f} {params:>9,}  {v}")
    print(
        f"\nwall time {result['seconds'] / 60:.1f} min; budget {settings.budget} x "
        f"{settings.steps} steps per method; test accuracy = mean of {settings.test_seeds} seeds"
    )
    print(f"real_search_baselines_beaten: {beaten}/{total}")
    print(f"real_search_hv_ratio_vs_tpe: {statistics.median(ratios):.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--first-seed", type=int, default=0, help="search seeds first..first+seeds-1 (resplit runs)"
    )
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--test-seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    datasets = [d for d in args.datasets.split(",") if d]
    settings = Settings(steps=args.steps, budget=args.budget, test_seeds=args.test_seeds)
    if args.quick:
        datasets = datasets[:1]
        settings = Settings(
            steps=12,
            budget=4,
            max_length=32,
            val_size=64,
            test_size=64,
            train_size=256,
            test_seeds=2,
            baseline_rates=(3e-3,),  # a smoke run: one rate per baseline
        )
        args.seeds, args.first_seed = 1, 0
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    result = run(datasets, seeds, settings, args.workers)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    **result,
                    "fronts": {"|".join(map(str, k)): v for k, v in result["fronts"].items()},
                    "chosen": {"|".join(k): v for k, v in result["chosen"].items()},
                },
                indent=1,
                default=str,
            )
        )
    report(result, datasets, seeds, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
