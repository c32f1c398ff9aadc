"""Multi-objective ranking strategies: non-dominated sorting and the epsilon-net tie-break."""

from __future__ import annotations

import random

import numpy as np
import pytest

from paretune.search.algorithms.pareto import dominates, non_dominated_sort
from paretune.search.algorithms.ranking import (
    EpsilonNetRanking,
    RankingStrategy,
    ScalarRanking,
    fronts,
    make_ranking,
)


def peel_fronts(points: list[list[float]]) -> list[list[int]]:
    """Non-dominated sorting by its definition: peel the undominated points off, again and again."""
    left, out = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_fronts_agree_with_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    m = 2 + seed % 2
    points = [[rng.randint(0, 5) for _ in range(m)] for _ in range(40)]  # ties and duplicates
    ours = [sorted(f.tolist()) for f in fronts(np.array(points, dtype=float))]
    assert ours == peel_fronts(points)
    assert non_dominated_sort(points) == ours


def test_dominated_points_rank_after_every_non_dominated_one() -> None:
    pts = np.array([[1.0, 5.0], [2.0, 6.0], [5.0, 1.0], [3.0, 3.0], [6.0, 6.0]])
    order = EpsilonNetRanking().order(pts)
    assert set(order[:3]) == {0, 2, 3}  # the front
    assert order[3:] == [1, 4]  # front 1 then front 2


def test_epsilon_net_spreads_along_the_front() -> None:
    # nine points evenly spread on a line front: extremes first, then the middle, then the gaps
    pts = np.array([[i / 8, 1 - i / 8] for i in range(9)])
    order = EpsilonNetRanking().order(pts)
    assert order[0] == 0  # best on the first objective
    assert order[1] == 8  # the farthest from it: the other extreme
    assert order[2] == 4  # the middle
    assert set(order[3:5]) == {2, 6}  # quarter points before their neighbours
    assert sorted(order) == list(range(9))


def test_epsilon_net_uses_normalised_objectives() -> None:
    # the second objective spans a million times the first; in raw units the third pick would be
    # point 1 (farthest along the second objective), normalised it is point 2
    pts = np.array([[0.0, 1e6], [0.05, 0.5e6], [0.6, 0.45e6], [1.0, 0.0]])
    assert [len(f) for f in fronts(pts)] == [4]
    assert EpsilonNetRanking().order(pts) == [0, 3, 2, 1]


def test_duplicates_come_last_in_their_front_and_order_is_deterministic() -> None:
    pts = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    first = EpsilonNetRanking().order(pts)
    assert first[-1] == 1  # the copy of point 0
    assert first == EpsilonNetRanking().order(pts.copy())


def test_nan_counts_as_the_worst_value() -> None:
    pts = np.array([[float("nan"), 1.0], [0.5, 1.0], [0.7, 2.0]])
    order = EpsilonNetRanking().order(pts)
    assert order[0] == 1
    assert order.index(0) > order.index(1)


def test_scalar_ranking_orders_by_one_objective() -> None:
    pts = np.array([[3.0, 0.0], [1.0, 9.0], [2.0, 5.0]])
    assert ScalarRanking().order(pts) == [1, 2, 0]
    assert ScalarRanking(objective=1).order(pts) == [0, 2, 1]


def test_strategies_share_one_interface() -> None:
    for name in ("eps-net", "scalar"):
        assert isinstance(make_ranking(name), RankingStrategy)
    with pytest.raises(ValueError, match="unknown ranking"):
        make_ranking("crowding")


@pytest.mark.parametrize("strategy", [EpsilonNetRanking(), ScalarRanking()])
def test_position_agrees_with_order(strategy: RankingStrategy) -> None:
    rng = np.random.default_rng(3)
    pts = rng.integers(0, 6, size=(60, 2)).astype(float)
    order = strategy.order(pts)
    assert [strategy.position(pts, i) for i in range(len(pts))] == [
        order.index(i) for i in range(len(pts))
    ]
