"""A realistic fake study, written into a store: for tests, the dashboard benchmark and demos.

The study looks like what the driver writes for a LoRA search on a 6-layer, 384-wide encoder:
a paretune row with the spec, an Optuna study whose trials carry ``lora.rank.L3.query``-style
parameters and the ``plan`` / ``summary`` / ``trainable_params`` / ``config_hash`` user attributes,
every metric at every evaluation step in ``paretune_metrics``, the scheduler's ``promote`` and
``stop`` events, failures with their traceback, and a hypervolume row after each COMPLETE trial.

Nothing is trained: accuracy grows with capacity and a well-chosen learning rate, plus noise, and
learning curves saturate towards it. Writing goes through :mod:`paretune.search.store.study_store`'s tables
(bulk inserts) and Optuna's API (``study.add_trials``), so a 2,000-trial study builds in seconds.

Example::

    from synthetic_study import build_synthetic_study
    info = build_synthetic_study("sqlite:///demo.db", "demo", n_trials=200, n_steps=20)
    print(info.states, len(info.pareto_numbers))
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml

from paretune.search.algorithms.pareto import dominates, hypervolume, pareto_indices, to_min_form
from paretune.search.store.study_store import (
    EventRow,
    HypervolumeRow,
    MetricRow,
    StudyRow,
    StudyStore,
    utcnow,
)
from paretune.spaces.catalogue import OBJECTIVES
from paretune.spaces.plan import PeftPlan
from paretune.spaces.spec import StudySpec

METRIC_NAMES: tuple[str, ...] = tuple(
    n for n, o in OBJECTIVES.items() if "classification" in o.tasks
)
HIDDEN = 384
HEAD_PARAMS = HIDDEN * 2 + 2
RANKS = (0, 4, 8, 16)
DROPOUTS = (0.0, 0.1)
LR_RANGE = (1e-4, 3e-3)
EVAL_EVERY = 10
FAKE_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "trainers/loop.py", line 212, in train\n'
    "    loss.backward()\n"
    "RuntimeError: CUDA out of memory. Tried to allocate 96.00 MiB"
)


@dataclass(frozen=True)
class SyntheticStudy:
    """What was written: enough for tests to know the right answers."""

    name: str
    study_id: int
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    primary_metric: str
    rungs: tuple[int, ...]
    max_steps: int
    states: dict[str, int]
    pareto_numbers: tuple[int, ...]
    infeasible_numbers: tuple[int, ...]
    n_metric_rows: int
    n_primary_rows: int
    n_events: int
    n_hypervolume_rows: int
    reference_point: dict[str, float] = field(default_factory=dict)


@dataclass
class _Trial:
    number: int
    params: dict[str, Any]
    plan: dict[str, Any]
    lora_params: int
    lr: float
    final: dict[str, float]
    state: str = "COMPLETE"
    steps: list[int] = field(default_factory=list)
    start: datetime = field(default_factory=utcnow)
    end: datetime | None = None
    infeasible: bool = False
    stop_rung: int = 0
    constraints: list[float] | None = None


def _spec(
    name: str, objectives: Sequence[str], targets: Sequence[str], n_trials: int, n_steps: int
) -> StudySpec:
    max_steps = EVAL_EVERY * n_steps
    min_steps = EVAL_EVERY * max(1, math.ceil(n_steps / 9))
    return StudySpec.model_validate(
        {
            "study": name,
            "objectives": list(objectives),
            "space": {
                "lora": {"targets": list(targets), "ranks": list(RANKS), "dropout": list(DROPOUTS)}
            },
            "search": {
                "n_trials": n_trials,
                "max_steps": max_steps,
                "min_steps": min(min_steps, max_steps),
                "eta": 3,
            },
        }
    )


def _sample(number: int, rng: random.Random, n_layers: int, targets: Sequence[str]) -> _Trial:
    params: dict[str, Any] = {}
    ranks: list[list[Any]] = []
    # some layers are more useful than others: upper layers get adapters more often
    for layer in range(n_layers):
        for t in targets:
            weights = [3.0 - layer / n_layers, 1.0, 1.0, 0.5 + layer / n_layers]
            r = rng.choices(RANKS, weights=weights)[0]
            params[f"lora.rank.L{layer}.{t}"] = r
            if r > 0:
                ranks.append([layer, t, r])
    if not ranks:  # at least one adapter, as the driver re-samples empty plans
        layer, t = n_layers - 1, targets[0]
        params[f"lora.rank.L{layer}.{t}"] = 4
        ranks.append([layer, t, 4])
    lr = math.exp(rng.uniform(math.log(LR_RANGE[0]), math.log(LR_RANGE[1])))
    dropout = rng.choice(DROPOUTS)
    params["learning_rate"] = lr
    params["lora.dropout"] = dropout
    plan = {
        "lora": {
            "ranks": ranks,
            "alpha": None,
            "alpha_multiple": 2.0,
            "dropout": dropout,
            "dora": False,
        }
    }
    lora_params = sum(r * 2 * HIDDEN for _, _, r in ranks)
    upper = sum(r * (1 + layer) for layer, _, r in ranks) / (n_layers * len(targets) * 16)
    capacity = math.log1p(lora_params / 2000.0)
    acc = 0.58 + 0.30 * (1 - math.exp(-capacity / 2.5)) + 0.04 * upper
    acc -= 0.05 * (math.log10(lr) - math.log10(1e-3)) ** 2 + 0.01 * (dropout > 0)
    acc = min(0.97, max(0.35, acc + rng.gauss(0, 0.012)))
    final = {"accuracy": acc}
    return _Trial(number, params, plan, lora_params, lr, final)


def _metrics_at(t: _Trial, step: int, max_steps: int, rng: random.Random) -> dict[str, float]:
    progress = 1 - math.exp(-4.0 * step / max_steps)
    acc = 0.5 + (t.final["accuracy"] - 0.5) * progress / (1 - math.exp(-4.0)) + rng.gauss(0, 0.006)
    acc = min(0.99, max(0.3, acc))
    trainable = HEAD_PARAMS + t.lora_params
    return {
        "accuracy": acc,
        "macro_f1": max(0.0, acc - 0.015 + rng.gauss(0, 0.004)),
        "eval_loss": max(0.05, 0.72 - 1.1 * (acc - 0.5) + rng.gauss(0, 0.01)),
        "trainable_params": float(trainable),
        "train_seconds": step * (0.04 + trainable * 2e-7),
        "peak_memory_mb": 850.0 + trainable * 16 / 2**20 * 4 + 0.5 * step / max_steps,
    }


def _distributions(params: dict[str, Any]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: PLC0415

    out: dict[str, Any] = {}
    for k in params:
        if k == "learning_rate":
            out[k] = FloatDistribution(LR_RANGE[0], LR_RANGE[1], log=True)
        elif k == "lora.dropout":
            out[k] = CategoricalDistribution(list(DROPOUTS))
        else:
            out[k] = CategoricalDistribution(list(RANKS))
    return out


def _summary(plan: dict[str, Any]) -> str:
    try:
        return PeftPlan.from_dict(plan).summary()
    except Exception:  # a family this checkout does not know
        return ", ".join(sorted(plan))


def _config_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def build_synthetic_study(
    url: str,
    name: str = "synthetic",
    *,
    n_trials: int = 40,
    n_steps: int = 10,
    objectives: Sequence[str] = ("accuracy", "trainable_params"),
    status: str = "finished",
    n_running: int = 0,
    fail_fraction: float = 0.08,
    prune_fraction: float = 0.45,
    infeasible_fraction: float = 0.0,
    metric_names: Sequence[str] = METRIC_NAMES,
    n_layers: int = 6,
    targets: Sequence[str] = ("query", "value"),
    max_concurrent: int = 4,
    seed: int = 0,
    start_time: datetime | None = None,
    bulk: bool | None = None,
) -> SyntheticStudy:
    """Write one synthetic study of ``n_trials`` trials into the store at ``url``.

    ``n_steps`` evaluation steps for a trial trained to full fidelity (``max_steps = 10 * n_steps``);
    PRUNED trials stop at a rung, FAIL ones at a random step, the last ``n_running`` trials are
    still RUNNING. With ``infeasible_fraction`` > 0 every COMPLETE trial carries the
    ``constraints`` user attribute and that fraction of them violate it. Times are naive UTC, as
    both stores keep them; ``start_time`` is when the study began (by default it ends now).

    Trials go in through ``study.add_trials`` (Optuna's API, about 50 trials a second), or with
    ``bulk`` (the default above 200 trials) as bulk inserts into the same Optuna tables, rows
    identical to what ``add_trials`` writes (a test checks that), for studies of thousands of trials.
    """
    if bulk is None:
        bulk = n_trials > 200
    import optuna  # noqa: PLC0415

    rng = random.Random(seed)
    spec = _spec(name, objectives, targets, n_trials, n_steps)
    rungs = spec.search.rungs()
    max_steps = spec.search.max_steps
    grid = [EVAL_EVERY * (k + 1) for k in range(n_steps)]
    directions = spec.directions
    primary = spec.primary_metric
    t0 = start_time or datetime(2000, 1, 1)

    trials = [_sample(i, rng, n_layers, targets) for i in range(n_trials)]
    median = sorted(t.final["accuracy"] for t in trials)[len(trials) // 2] if trials else 0.0
    slots = [t0] * max(1, max_concurrent)
    events: list[dict[str, Any]] = []
    for t in trials:
        slot = min(range(len(slots)), key=lambda i: slots[i])
        t.start = slots[slot] + timedelta(seconds=rng.uniform(1, 5))
        roll = rng.random()
        if t.number >= n_trials - n_running:
            t.state = "RUNNING"
            stop = grid[rng.randrange(len(grid))]
        elif roll < fail_fraction:
            t.state = "FAIL"
            stop = grid[rng.randrange(len(grid))]
        elif (
            rng.random() < prune_fraction * (1.5 if t.final["accuracy"] < median else 0.5)
            and len(rungs) > 1
        ):
            t.state = "PRUNED"
            t.stop_rung = rng.choice(rungs[:-1])
            stop = next(s for s in grid if s >= t.stop_rung)
        else:
            t.state = "COMPLETE"
            stop = max_steps
        t.steps = [s for s in grid if s <= stop]
        seconds = _metrics_at(t, stop, max_steps, rng)["train_seconds"] * 30 + 20
        if t.state != "RUNNING":
            t.end = t.start + timedelta(seconds=seconds)
            slots[slot] = t.end
        else:
            slots[slot] = t.start + timedelta(seconds=seconds)
        for rung in rungs[:-1]:
            if rung > stop or t.state == "FAIL" or (t.state == "PRUNED" and rung > t.stop_rung):
                continue
            stopped = t.state == "PRUNED" and rung == t.stop_rung
            detail: dict[str, Any] = {"rung": rung, "rank": rng.randint(1, 12)}
            if stopped:
                detail["reason"] = f"not in the top 1/{spec.search.eta} at rung {rung}"
            when = t.start + timedelta(seconds=seconds * rung / max_steps)
            events.append(
                {
                    "trial_number": t.number,
                    "time": when,
                    "kind": "stop" if stopped else "promote",
                    "detail": detail,
                }
            )
        if t.state == "FAIL":
            events.append(
                {
                    "trial_number": t.number,
                    "time": t.end,
                    "kind": "trial_failed",
                    "detail": {"traceback": FAKE_TRACEBACK},
                }
            )

    if start_time is None:  # the study began so that its last trial ended a minute ago
        ends = [t.end for t in trials if t.end is not None] + [t.start for t in trials]
        shift = (utcnow() - timedelta(minutes=1)).replace(microsecond=0) - max(ends, default=t0)
        t0 += shift
        for t in trials:
            t.start += shift
            t.end = t.end + shift if t.end is not None else None
        for e in events:
            e["time"] += shift

    metric_rows: list[dict[str, Any]] = []
    frozen: list[Any] = []
    for t in trials:
        curve: dict[int, float] = {}
        last: dict[str, float] = {}
        for s in t.steps:
            values = _metrics_at(t, s, max_steps, rng)
            when = t.start + timedelta(
                seconds=(values["train_seconds"] * 30 + 20) * s / max(t.steps)
            )
            for k in metric_names:
                metric_rows.append(
                    {
                        "trial_number": t.number,
                        "step": s,
                        "name": k,
                        "value": values[k],
                        "time": when,
                    }
                )
            curve[s] = values[primary]
            last = values
        user_attrs: dict[str, Any] = {
            "plan": t.plan,
            "summary": _summary(t.plan),
            "trainable_params": HEAD_PARAMS + t.lora_params,
            "config_hash": _config_hash(t.params),
        }
        values_list: list[float] | None = None
        if t.state == "COMPLETE":
            values_list = [float(last[o]) for o in objectives]
            if infeasible_fraction > 0:
                t.infeasible = rng.random() < infeasible_fraction
                margin = rng.uniform(0.1, 1.0)
                t.constraints = [margin if t.infeasible else -margin]
                user_attrs["constraints"] = t.constraints
        elif t.state == "FAIL":
            user_attrs["traceback"] = FAKE_TRACEBACK
        frozen.append(
            optuna.trial.FrozenTrial(
                number=t.number,
                state=optuna.trial.TrialState[t.state],
                value=None,
                values=values_list,
                datetime_start=_aware(t.start),
                datetime_complete=_aware(t.end),
                params=t.params,
                distributions=_distributions(t.params),
                user_attrs=user_attrs,
                system_attrs={},
                intermediate_values=curve,
                trial_id=t.number,
            )
        )

    # reference point and hypervolume after each COMPLETE trial, in completion order
    complete = [t for t, f in zip(trials, frozen, strict=True) if f.state.name == "COMPLETE"]
    values_of = {f.number: list(f.values) for f in frozen if f.state.name == "COMPLETE"}
    reference = {o: 0.0 for o in objectives}
    for o in objectives:
        if OBJECTIVES[o].direction == "minimize":
            worst = max((values_of[t.number][objectives.index(o)] for t in complete), default=1.0)
            reference[o] = float(worst) * 1.1 if worst > 0 else 1.0
    ref_min = to_min_form([reference[o] for o in objectives], directions)
    events.append(
        {
            "trial_number": None,
            "time": t0,
            "kind": "reference_point",
            "detail": {"point": reference},
        }
    )
    hv_rows: list[dict[str, Any]] = []
    front: list[list[float]] = []
    ended = sorted((t for t in trials if t.end is not None), key=lambda t: t.end or t0)
    compute = 0
    n_complete = 0
    for t in ended:
        compute += t.steps[-1] if t.steps else 0
        if t.state != "COMPLETE":
            continue
        n_complete += 1
        if not t.infeasible:
            p = to_min_form(values_of[t.number], directions)
            if not any(dominates(q, p) for q in front):
                front = [q for q in front if not dominates(p, q)] + [p]
        hv_rows.append(
            {
                "time": t.end,
                "n_complete": n_complete,
                "compute_steps": compute,
                "value": hypervolume(front, ref_min),
            }
        )

    feasible = [t for t in complete if not t.infeasible]
    points = [to_min_form(values_of[t.number], directions) for t in feasible]
    pareto = tuple(sorted(feasible[i].number for i in pareto_indices(points)))

    # write: paretune row, Optuna trials, then metrics, events and hypervolume in bulk
    canonical = spec.canonical_json()
    spec_yaml = yaml.safe_dump(json.loads(canonical), sort_keys=False)
    store = StudyStore(url)
    try:
        info = store.create_study(name, spec_yaml, canonical, spec.spec_hash(), n_trials, max_steps)
        _write_trials(store, name, directions, frozen, bulk=bulk)
        last_time = max([t.end or t.start for t in trials], default=t0)
        for rows in (metric_rows, events, hv_rows):
            for r in rows:
                r["study_id"] = info.id
        with store.session() as s:
            if metric_rows:
                s.execute(MetricRow.__table__.insert(), metric_rows)
            if events:
                s.execute(EventRow.__table__.insert(), events)
            if hv_rows:
                s.execute(HypervolumeRow.__table__.insert(), hv_rows)
            s.execute(
                StudyRow.__table__.update()
                .where(StudyRow.id == info.id)
                .values(
                    status=status,
                    created_at=t0,
                    updated_at=last_time,
                    heartbeat_at=utcnow() if status == "running" else None,
                    driver_id="synthetic" if status == "running" else None,
                )
            )
    finally:
        _dispose(store)

    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    return SyntheticStudy(
        name=name,
        study_id=info.id,
        objectives=tuple(objectives),
        directions=tuple(directions),
        primary_metric=primary,
        rungs=tuple(rungs),
        max_steps=max_steps,
        states=states,
        pareto_numbers=pareto,
        infeasible_numbers=tuple(t.number for t in complete if t.infeasible),
        n_metric_rows=len(metric_rows),
        n_primary_rows=sum(1 for r in metric_rows if r["name"] == primary),
        n_events=len(events),
        n_hypervolume_rows=len(hv_rows),
        reference_point=reference,
    )


def _aware(when: datetime | None) -> datetime | None:
    """Naive UTC -> aware UTC: Optuna reads naive datetimes as local time."""
    return None if when is None else when.replace(tzinfo=timezone.utc)


def _write_trials(
    store: StudyStore, name: str, directions: Sequence[str], frozen: list[Any], *, bulk: bool
) -> None:
    """Create the Optuna study and its trials: through ``add_trials`` or as bulk inserts."""
    import optuna  # noqa: PLC0415

    study = optuna.create_study(
        study_name=name, storage=store.optuna_storage(), directions=list(directions)
    )
    if not bulk:
        study.add_trials(frozen)
        return
    from optuna.distributions import distribution_to_json  # noqa: PLC0415
    from optuna.storages._rdb import models  # noqa: PLC0415

    finite = models.TrialValueModel.TrialValueType.FINITE
    finite_step = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    values: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    attrs: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    with store.optuna_storage().engine.begin() as conn:
        for f in frozen:
            row = {
                "number": f.number,
                "study_id": study._study_id,
                "state": f.state,
                "datetime_start": _naive_utc(f.datetime_start),
                "datetime_complete": _naive_utc(f.datetime_complete),
            }
            trial_id = conn.execute(
                models.TrialModel.__table__.insert().values(**row)
            ).inserted_primary_key[0]
            for i, v in enumerate(f.values or []):
                values.append(
                    {"trial_id": trial_id, "objective": i, "value": float(v), "value_type": finite}
                )
            for k, v in f.params.items():
                dist = f.distributions[k]
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": k,
                        "param_value": dist.to_internal_repr(v),
                        "distribution_json": distribution_to_json(dist),
                    }
                )
            for k, v in f.user_attrs.items():
                attrs.append({"trial_id": trial_id, "key": k, "value_json": json.dumps(v)})
            for step, v in f.intermediate_values.items():
                steps.append(
                    {
                        "trial_id": trial_id,
                        "step": step,
                        "intermediate_value": float(v),
                        "intermediate_value_type": finite_step,
                    }
                )
        for table, rows in (
            (models.TrialValueModel.__table__, values),
            (models.TrialParamModel.__table__, params),
            (models.TrialUserAttributeModel.__table__, attrs),
            (models.TrialIntermediateValueModel.__table__, steps),
        ):
            if rows:
                conn.execute(table.insert(), rows)


def _naive_utc(when: datetime | None) -> datetime | None:
    return None if when is None else when.astimezone(timezone.utc).replace(tzinfo=None)


def _dispose(store: StudyStore) -> None:
    store.dispose()
    storage = store._optuna_storage
    if storage is not None and hasattr(storage, "engine"):
        storage.engine.dispose()


def build_empty_study(
    url: str, name: str, objectives: Sequence[str] = ("accuracy", "trainable_params")
) -> int:
    """A study that was created but has no trial yet (status ``created``); returns its row id."""
    import optuna  # noqa: PLC0415

    spec = _spec(name, objectives, ("query", "value"), 10, 10)
    canonical = spec.canonical_json()
    store = StudyStore(url)
    try:
        info = store.create_study(
            name,
            yaml.safe_dump(json.loads(canonical), sort_keys=False),
            canonical,
            spec.spec_hash(),
            spec.search.n_trials,
            spec.search.max_steps,
        )
        optuna.create_study(
            study_name=name, storage=store.optuna_storage(), directions=spec.directions
        )
    finally:
        store.dispose()
    return info.id


__all__ = ["METRIC_NAMES", "SyntheticStudy", "build_empty_study", "build_synthetic_study"]
