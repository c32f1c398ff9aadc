"""Continuous hyperparameters chosen for the size a proposal already has.

The best learning rate of a fine-tune depends on how much it trains: larger adapters want lower
rates. TPE models each parameter on its own, so a proposal that places its adapters well can
still carry a rate that suits another size, and each such trial costs a full training to learn
little. When an objective is known before training (``trainable_params``), the rate's optimum
can be read off the full-fidelity results as a function of that objective.

:func:`conditioned_floats` fits a Gaussian process on the top rung's observations: inputs are the
proposal's continuous parameters (normalised to [0, 1], on a log scale where the parameter is
sampled so) and the log of the known objective, output the one other objective. Holding the
proposal's known objective fixed, it returns the continuous values that maximise the upper
confidence bound (mean plus one standard deviation) over a grid (one parameter) or a seeded set
of points (several). Everything else in the proposal (which modules carry adapters, at what
rank) stays TPE's. Measured in docs/search.md ("Learning rates for the proposal's size").

Deterministic: the answer depends on the observations and the proposal only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

MIN_OBSERVATIONS = 3  # full-fidelity results the model needs before it chooses
LENGTH_SCALES = (0.1, 0.2, 0.35, 0.6, 1.0)  # in the unit box, chosen by marginal likelihood
NOISE_RATIOS = (0.01, 0.05, 0.2, 0.5)  # noise variance over signal variance, likewise
GRID = 101  # points for a single continuous parameter
POINTS = 512  # random points for several


def _is_float(distribution: Any) -> bool:
    from optuna.distributions import FloatDistribution  # noqa: PLC0415

    return isinstance(distribution, FloatDistribution)


def _to_unit(value: float, distribution: Any) -> float:
    lo, hi, v = float(distribution.low), float(distribution.high), float(value)
    if distribution.log:
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return (v - lo) / (hi - lo) if hi > lo else 0.5


def _from_unit(u: float, distribution: Any) -> float:
    lo, hi = float(distribution.low), float(distribution.high)
    if distribution.log:
        value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    else:
        value = lo + u * (hi - lo)
    if distribution.step is not None:
        value = lo + round((value - lo) / distribution.step) * distribution.step
    return min(max(value, lo), hi)


class _GP:
    """Zero-mean GP with an RBF kernel on standardised outputs; hyperparameters by a grid search
    over the marginal likelihood."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = x
        self.mean, self.scale = float(y.mean()), float(y.std()) or 1.0
        yn = (y - self.mean) / self.scale
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        best: tuple[float, float, np.ndarray, np.ndarray] | None = None
        for ell in LENGTH_SCALES:
            for noise in NOISE_RATIOS:
                k = np.exp(-0.5 * d2 / ell**2) + noise * np.eye(len(x))
                chol = np.linalg.cholesky(k)
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
                evidence = float(-0.5 * yn @ alpha - np.log(np.diag(chol)).sum())
                if best is None or evidence > best[0]:
                    best = (evidence, ell, chol, alpha)
        assert best is not None
        _, self.ell, self.chol, self.alpha = best

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``xs``, in output units."""
        ks = np.exp(-0.5 * ((xs[:, None, :] - self.x[None, :, :]) ** 2).sum(-1) / self.ell**2)
        v = np.linalg.solve(self.chol, ks.T)
        var = np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return self.mean + self.scale * (ks @ self.alpha), self.scale * np.sqrt(var)


def conditioned_floats(
    proposal: Mapping[str, Any],
    distributions: Mapping[str, Any],
    known: float,
    observations: Sequence[tuple[Mapping[str, Any], float, float]],
    *,
    maximize: bool,
    seed: int = 0,
    anchors: Mapping[str, Callable[[float], float]] | None = None,
) -> dict[str, float] | None:
    """The proposal's continuous values chosen for its known objective ``known``, or None.

    ``observations`` are full-fidelity results: (parameters, known objective, the other
    objective). None when the proposal has no continuous parameter or fewer than
    :data:`MIN_OBSERVATIONS` results carry all of them.

    ``anchors`` maps a parameter to the value expected best at a known objective (the learning
    rate that suits a size, :func:`paretune.spaces.combine.ideal_rate`); the model then sees that
    parameter as its offset from the anchor (in the unit box), so what it learnt at one size moves
    along the anchor's law to another. Without it, a few results at one size set every size's
    rate: small plans get the rate of large ones and stay at the majority class.
    """
    anchors = dict(anchors or {})
    names = sorted(n for n in proposal if n in distributions and _is_float(distributions[n]))
    rows = [
        (params, k, v)
        for params, k, v in observations
        if all(n in params for n in names) and math.isfinite(v) and math.isfinite(k)
    ]
    if not names or len(rows) < MIN_OBSERVATIONS:
        return None
    z_top = max(math.log1p(max(k, 0.0)) for _, k, _ in rows) or 1.0

    def shift(n: str, k: float) -> float:
        anchor = anchors.get(n)
        return _to_unit(anchor(k), distributions[n]) if anchor is not None else 0.0

    x = np.array(
        [
            [_to_unit(params[n], distributions[n]) - shift(n, k) for n in names]
            + [math.log1p(max(k, 0.0)) / z_top]
            for params, k, _ in rows
        ]
    )
    y = np.array([v if maximize else -v for _, _, v in rows])
    gp = _GP(x, y)
    if len(names) == 1:
        grid = np.linspace(0.0, 1.0, GRID)[:, None]
    else:
        grid = np.random.default_rng(seed).random((POINTS, len(names)))
        grid = np.vstack([grid, [[_to_unit(proposal[n], distributions[n]) for n in names]]])
    z = np.full((len(grid), 1), math.log1p(max(known, 0.0)) / z_top)
    offsets = np.array([shift(n, known) for n in names])
    mean, sd = gp.predict(np.hstack([grid - offsets, z]))
    best = grid[int(np.argmax(mean + sd))]
    return {n: _from_unit(float(u), distributions[n]) for n, u in zip(names, best, strict=True)}
