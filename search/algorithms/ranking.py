"""Multi-objective ranking: the order in which the results at one rung deserve promotion.

A scheduler asks a :class:`RankingStrategy` for the order of the points recorded at a rung (best
first) and promotes the head of that order; the strategy alone says what "better" means, so it can
be swapped without touching the scheduler (the shape of syne-tune's MOASHA).

Points are in minimisation form (see :func:`paretune.search.algorithms.pareto.to_min_form`), one row per
result. The order must depend only on the points and their row order, never on chance: callers pass
rows in a canonical order (sorted by trial) so that a rebuilt rung ranks exactly as the original.

Strategies:

- :class:`EpsilonNetRanking` (default): non-dominated sorting into fronts; inside a front, an
  epsilon-net, i.e. greedy farthest-point order in objective space normalised to [0, 1] over all
  the points at the rung. The net starts at the front's best point on the first objective; each
  next point is the one farthest (Euclidean) from every point already taken. Promotions therefore
  spread along the front instead of piling up in one corner of it.
- :class:`ScalarRanking`: one objective only, as Ray Tune's ASHA ranks; a baseline and a test aid.

Example::

    >>> import numpy as np
    >>> pts = np.array([[-0.9, 100.0], [-0.8, 10.0], [-0.7, 50.0], [-0.85, 60.0]])
    >>> EpsilonNetRanking().order(pts)
    [0, 1, 3, 2]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from paretune.search.algorithms.pareto import fronts

__all__ = [
    "RANKINGS",
    "EpsilonNetRanking",
    "RankingStrategy",
    "ScalarRanking",
    "as_points",
    "epsilon_net_order",
    "fronts",
    "make_ranking",
]


@runtime_checkable
class RankingStrategy(Protocol):
    """Orders the results at one rung, best first."""

    name: str

    def order(self, points: np.ndarray) -> list[int]:
        """Row indices of ``points`` (shape ``(n, m)``, minimisation form), best first."""
        ...

    def position(self, points: np.ndarray, index: int) -> int:
        """Where row ``index`` stands in :meth:`order` (0 = best)."""
        ...


def as_points(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """A float array of shape ``(n, m)``; NaN (a diverged metric) becomes +inf, the worst value."""
    pts = np.asarray(rows, dtype=float)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-D array, got shape {pts.shape}")
    return np.where(np.isnan(pts), np.inf, pts)


def _normalise(points: np.ndarray) -> np.ndarray:
    """Scale each objective to [0, 1] over the finite values; +inf maps just past the worst."""
    finite = np.where(np.isfinite(points), points, np.nan)
    with np.errstate(all="ignore"):
        lo = np.nanmin(finite, axis=0)
        hi = np.nanmax(finite, axis=0)
    lo = np.where(np.isnan(lo), 0.0, lo)
    hi = np.where(np.isnan(hi), 1.0, hi)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (points - lo) / span
    return np.where(np.isfinite(scaled), scaled, 1.0 + 1e-9)


def epsilon_net_order(scaled: np.ndarray, members: np.ndarray) -> list[int]:
    """Greedy farthest-point order of ``members`` (row indices into ``scaled``).

    The first member is the best on the first objective (ties broken by the next objectives, then
    by row order); each next one maximises its distance to the nearest member already taken, the
    lowest row winning ties. Duplicate points come last.
    """
    members = np.asarray(members, dtype=int)
    if len(members) <= 1:
        return [int(i) for i in members]
    sub = scaled[members]
    keys = [members] + [sub[:, k] for k in range(sub.shape[1] - 1, -1, -1)]
    start = int(np.lexsort(keys)[0])
    taken = [start]
    nearest = np.linalg.norm(sub - sub[start], axis=1)
    nearest[start] = -1.0
    for _ in range(len(members) - 1):
        nxt = int(np.argmax(nearest))  # first maximum: the lowest position wins ties
        taken.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(sub - sub[nxt], axis=1))
        nearest[taken] = -1.0
    return [int(members[i]) for i in taken]


class _Ranking(ABC):
    """``position`` from ``order``; a strategy overrides it when it knows a cheaper way."""

    @abstractmethod
    def order(self, points: np.ndarray) -> list[int]: ...

    def position(self, points: np.ndarray, index: int) -> int:
        return self.order(points).index(index)


@dataclass(frozen=True)
class EpsilonNetRanking(_Ranking):
    """Non-dominated sorting, ties inside a front broken by an epsilon-net (the default)."""

    name: str = "eps-net"

    def order(self, points: np.ndarray) -> list[int]:
        pts = as_points(points)
        if len(pts) == 0:
            return []
        scaled = _normalise(pts)
        out: list[int] = []
        for front in fronts(pts):
            out.extend(epsilon_net_order(scaled, front))
        return out

    def position(self, points: np.ndarray, index: int) -> int:
        # the fronts ahead count whole; the net runs on the trial's own front only
        pts = as_points(points)
        ahead = 0
        for front in fronts(pts):
            if index in front:
                return ahead + epsilon_net_order(_normalise(pts), front).index(index)
            ahead += len(front)
        raise IndexError(index)


@dataclass(frozen=True)
class ScalarRanking(_Ranking):
    """One objective only (index ``objective``), lowest first; ties by row order."""

    objective: int = 0
    name: str = "scalar"

    def order(self, points: np.ndarray) -> list[int]:
        pts = as_points(points)
        return [int(i) for i in np.argsort(pts[:, self.objective], kind="stable")]


RANKINGS: dict[str, type] = {"eps-net": EpsilonNetRanking, "scalar": ScalarRanking}


def make_ranking(name: str = "eps-net") -> RankingStrategy:
    """The ranking strategy called ``name``."""
    try:
        return RANKINGS[name]()
    except KeyError:
        raise ValueError(f"unknown ranking {name!r}; allowed: {', '.join(RANKINGS)}") from None
