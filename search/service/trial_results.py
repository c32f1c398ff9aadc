"""Reading what a trial reported: its metrics by step, why it failed, its constraint violations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from paretune.search.algorithms.fidelity import History
from paretune.search.service.trainable import KEYS_KEY
from paretune.search.store.study_store import StudyStore
from paretune.spaces import StudySpec
from paretune.spaces.catalogue import METRIC_NAMES


def rung_history(store: StudyStore, study_id: int) -> list[tuple[int, int, dict[str, float]]]:
    """Every stored result as (trial_number, step, {metric: value}), in trial and step order."""
    grouped: dict[tuple[int, int], dict[str, float]] = {}
    for row in store.metrics(study_id):
        grouped.setdefault((row["trial_number"], row["step"]), {})[row["name"]] = row["value"]
    return [(n, s, m) for (n, s), m in sorted(grouped.items())]


def with_trainable_params(history: History, trials: Sequence[Any]) -> History:
    """The results with each trial's ``trainable_params`` (an objective known before training,
    kept on the trial) added where a stored result lacks it."""
    params = {
        t.number: float(t.user_attrs["trainable_params"])
        for t in trials
        if "trainable_params" in t.user_attrs
    }
    return [
        (n, step, {"trainable_params": params[n], **m} if n in params else m)
        for n, step, m in history
    ]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_OOM = re.compile(r"MemoryError|OutOfMemoryError|out of memory", re.IGNORECASE)
_NAN = re.compile(r"FloatingPointError|NonFiniteMetricError")


def failure_reason(tb: str) -> str:
    """Why a trial failed, from its traceback's last lines: ``oom``, ``nan`` or ``error``.

    Out of memory is a ``MemoryError``, torch's ``OutOfMemoryError`` (CUDA) or Ray's
    ``OutOfMemoryError`` (its memory monitor killed the worker); a non-finite loss or metric is a
    ``FloatingPointError``. The search goes on after each: only the trial fails.
    """
    tail = "\n".join(tb.strip().splitlines()[-3:])
    if _OOM.search(tail):
        return "oom"
    if _NAN.search(tail):
        return "nan"
    return "error"


def reported_keys(result: dict[str, Any]) -> list[str]:
    """The metric names a result carries: those the trial function reported (our trainable lists
    them), else the objectives paretune knows."""
    listed = result.get(KEYS_KEY)
    if isinstance(listed, str):
        return [k for k in listed.split(",") if k]
    return list(METRIC_NAMES)


def constraint_violations(spec: StudySpec, metrics: dict[str, float]) -> list[float] | None:
    """Measured-constraint violations (value - limit, <= 0 feasible); None when none are set."""
    c = spec.search.constraints
    limits = [("peak_memory_mb", c.max_peak_memory_mb), ("train_seconds", c.max_train_seconds)]
    active = [(name, limit) for name, limit in limits if limit is not None]
    if not active:
        return None
    return [float(metrics.get(name, 0.0)) - float(limit) for name, limit in active]
