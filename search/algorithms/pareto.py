"""The one definition of a study's Pareto front: dominance, fronts, feasibility, fidelity, members.

Everything that names a front calls this module: the scheduler's rung ranking
(:mod:`~paretune.search.algorithms.ranking`), the hypervolume history (:mod:`~paretune.search.algorithms.hypervolume`),
``paretune pareto`` and its JSON, the report, deepening, and the dashboard. So they cannot
disagree about which trials are on it:

- **dominance** in "minimisation form" (callers flip maximised objectives with
  :func:`to_min_form` / :func:`min_form_array`); equal points are all kept;
- **feasible** (:func:`constraints_hold`): no measured constraint value above 0. A constraint
  value that cannot be read as a number (a string that is not JSON, NaN inside the list) makes
  the trial infeasible: nothing shows that it holds;
- **at full fidelity** (:func:`at_full_fidelity`): trained to ``max_steps`` (user attribute
  ``steps``), or not saying (stores written before steps were recorded). After ``resume
  --max-steps`` the trials completed at the old top stay COMPLETE but leave the front;
- **the front's members** (:func:`front_trials`): the non-dominated COMPLETE, feasible,
  finite-valued trials at full fidelity, in trial order.

Vectorised with numpy where the inputs grow with a study (thousands of trials, hundreds of
results at a rung); hypervolume in plain Python (fronts are small).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Point = Sequence[float]


def to_min_form(values: Sequence[float], directions: Sequence[str]) -> list[float]:
    """Negate maximised objectives so that smaller is better everywhere."""
    return [
        -float(v) if d == "maximize" else float(v) for v, d in zip(values, directions, strict=True)
    ]


def dominates(a: Point, b: Point) -> bool:
    """a is at least as good as b everywhere and better somewhere (minimisation form)."""
    better = False
    for x, y in zip(a, b, strict=True):
        if x > y:
            return False
        if x < y:
            better = True
    return better


def min_form_array(values: Any, directions: Sequence[str]) -> np.ndarray:
    """:func:`to_min_form` on the rows of a 2-D array (a copy; NaN stays NaN)."""
    out = np.array(values, dtype=float, copy=True).reshape(len(values), len(directions))
    for j, d in enumerate(directions):
        if d == "maximize":
            out[:, j] = -out[:, j]
    return out


def _dominance(candidates: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``[i, j]``: row i of ``candidates`` dominates row j of ``pts`` (minimisation form)."""
    le = (candidates[:, None, :] <= pts[None, :, :]).all(axis=2)
    lt = (candidates[:, None, :] < pts[None, :, :]).any(axis=2)
    return le & lt


def fronts(points: Any) -> list[np.ndarray]:
    """Row indices grouped into non-dominated fronts (front 0 first), each in ascending order."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    if n == 0:
        return []
    dominates_ = _dominance(pts, pts)
    n_dominating = dominates_.sum(axis=0)
    remaining = np.ones(n, dtype=bool)
    out: list[np.ndarray] = []
    while remaining.any():
        current = np.flatnonzero(remaining & (n_dominating == 0))
        out.append(current)
        remaining[current] = False
        n_dominating = n_dominating - dominates_[current].sum(axis=0)
    return out


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices grouped in fronts: front 0 is non-dominated, front 1 is dominated only by front 0..."""
    return [[int(i) for i in f] for f in fronts(points)]


def pareto_mask(points: Any, chunk: int = 512) -> np.ndarray:
    """True for each non-dominated row of ``points`` (minimisation form); memory bounded by
    ``chunk`` candidate dominators at a time."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    dominated = np.zeros(n, dtype=bool)
    for lo in range(0, n, chunk):
        dominated |= _dominance(pts[lo : lo + chunk], pts).any(axis=0)
    return ~dominated


def pareto_indices(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (duplicates all kept), ascending."""
    return [int(i) for i in np.flatnonzero(pareto_mask(points))] if len(points) else []


# -- which trials may be on the front ---------------------------------------------------------


def constraints_hold(constraints: Any) -> bool:
    """Whether measured constraint violations say "feasible": none above 0, all readable.

    ``constraints`` is what a store holds: None or a missing value (no constraint measured), a
    number, a list of numbers, or either as JSON text."""
    if constraints is None or (isinstance(constraints, float) and math.isnan(constraints)):
        return True
    if isinstance(constraints, str):
        try:
            constraints = json.loads(constraints)
        except ValueError:
            return False
        if constraints is None:
            return True
    if isinstance(constraints, bool):
        return False
    if isinstance(constraints, int | float):
        return float(constraints) <= 0
    try:
        return all(not isinstance(c, bool) and float(c) <= 0 for c in constraints)  # NaN: False
    except (TypeError, ValueError):
        return False


def trial_steps(trial: Any) -> int | None:
    """The steps a finished trial trained to (user attribute ``steps``; None when not recorded)."""
    return _steps(trial.user_attrs.get("steps"))


def _steps(steps: Any) -> int | None:
    if isinstance(steps, bool) or not isinstance(steps, int | float) or math.isnan(steps):
        return None
    return int(steps)


def at_full_fidelity(steps: Any, max_steps: int | None) -> bool:
    """True where a trial ran to ``max_steps``, or its steps are unknown; always with no
    ``max_steps``."""
    n = _steps(steps)
    return not max_steps or n is None or n >= max_steps


def at_fidelity(trial: Any, max_steps: int | None) -> bool:
    """:func:`at_full_fidelity` of a trial (user attribute ``steps``)."""
    return at_full_fidelity(trial.user_attrs.get("steps"), max_steps)


def is_feasible(trial: Any) -> bool:
    """:func:`constraints_hold` of a trial (user attribute ``constraints``)."""
    return constraints_hold(trial.user_attrs.get("constraints"))


def candidate_mask(states: Any, values: Any, feasible: Any, full: Any) -> np.ndarray:
    """Which trials may be on the front: COMPLETE, every value finite, feasible, at full
    fidelity. ``values`` is an ``(n, m)`` array, NaN where a value is missing."""
    vals = np.asarray(values, dtype=float)
    finite = np.isfinite(vals).all(axis=1) if vals.ndim == 2 and vals.shape[1] else False
    return (
        (np.asarray(states, dtype=object) == "COMPLETE")
        & finite
        & np.asarray(feasible, dtype=bool)
        & np.asarray(full, dtype=bool)
    )


def complete_feasible(trials: Sequence[Any], max_steps: int | None = None) -> list[Any]:
    """The trials (Optuna FrozenTrials) that may be on the front, in trial order."""
    if not trials:
        return []
    width = max(len(t.values or ()) for t in trials)
    missing = [math.nan] * width
    mask = candidate_mask(
        [t.state.name for t in trials],
        [t.values if t.values and len(t.values) == width else missing for t in trials],
        [is_feasible(t) for t in trials],
        [at_fidelity(t, max_steps) for t in trials],
    )
    return [t for t, ok in zip(trials, mask, strict=True) if ok]


def front_trials(
    trials: Sequence[Any], directions: Sequence[str], max_steps: int | None = None
) -> list[Any]:
    """The front's members: the non-dominated :func:`complete_feasible` trials (ties all kept),
    in trial order."""
    candidates = complete_feasible(trials, max_steps)
    points = [to_min_form(t.values, directions) for t in candidates]
    return [candidates[i] for i in pareto_indices(points)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (minimisation form).

    Exact: a sweep in two dimensions, slicing along the first objective above that.
    """
    pts = [
        tuple(float(x) for x in p)
        for p in points
        if all(x < r for x, r in zip(p, reference, strict=True))
    ]
    if not pts:
        return 0.0
    pts = [pts[i] for i in pareto_indices(pts)]
    return _hv(sorted(set(pts)), tuple(float(r) for r in reference))


def _hv(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        volume, best_y = 0.0, ref[1]
        for x, y in sorted(pts):
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return volume
    # slice along the first objective: between consecutive x's the dominating set is fixed
    pts = sorted(pts)
    volume = 0.0
    for k, p in enumerate(pts):
        upper = pts[k + 1][0] if k + 1 < len(pts) else ref[0]
        width = upper - p[0]
        if width <= 0:
            continue
        sub = [q[1:] for q in pts[: k + 1]]
        sub = [sub[i] for i in pareto_indices(sub)]
        volume += width * _hv(sorted(set(sub)), ref[1:])
    return volume


def normalised_hypervolume(points: Sequence[Point], ideal: Point, reference: Point) -> float:
    """Hypervolume in the box [ideal, reference] scaled to [0, 1] per objective."""
    scaled = [
        [
            (x - lo) / (hi - lo) if hi > lo else 0.0
            for x, lo, hi in zip(p, ideal, reference, strict=True)
        ]
        for p in points
    ]
    return hypervolume(scaled, [1.0] * len(reference))
