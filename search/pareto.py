"""Pareto fronts and hypervolume, in plain Python (fronts here are small: hundreds of points).

Every function takes values in "minimisation form": callers flip the sign of maximised
objectives with :func:`to_min_form`, so one definition of dominance serves every study.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices grouped in fronts: front 0 is non-dominated, front 1 is dominated only by front 0..."""
    n = len(points)
    dominated_by = [0] * n
    dominates_list: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominates_list[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                dominates_list[j].append(i)
                dominated_by[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if dominated_by[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in dominates_list[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def pareto_indices(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (duplicates all kept)."""
    return non_dominated_sort(points)[0] if points else []


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
