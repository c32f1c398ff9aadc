"""Multi-fidelity multi-objective test problems with a known Pareto front, for the search benchmark.

Fidelity is training steps ``s`` up to ``max_steps`` (rungs ``min_steps * eta^k``). A problem
draws a configuration define-by-run on an Optuna trial (``sample``), answers a noisy observation
at any fidelity (``observe``) and the noise-free value at full fidelity (``true_values``): a
method is scored on the true values of the configurations it reports.

- :class:`MFDTLZ2`: DTLZ2 (two objectives, both minimised) over six variables. At fidelity ``s``
  the distance term ``g`` carries a bias ``beta(s) * b(x)`` that shrinks to exactly 0 at
  ``max_steps`` (``beta(s)`` decays with ``exp(-s / 30)``) and depends on the configuration, so
  low fidelities misrank it; plus Gaussian noise. True front: the quarter circle of radius 1.
- :class:`PeftSurrogate`: a LoRA search on a 6-layer, 384-wide encoder. A rank per layer and
  target (query, value) in {0, 4, 8, 16} and a log10 learning rate. ``trainable_params`` is exact:
  ``r * (384 + 384)`` per module plus the classification head (``384 * 2 + 2``). Accuracy follows
  a learning curve ``0.5 + (A - 0.5) * (1 - exp(-s / tau))``: capacity (upper layers and value
  projections count more, with diminishing returns) raises the plateau ``A``; a learning rate
  above the optimum (which falls as the adapters grow) learns fast and plateaus low, one below it
  learns slowly. Curves cross: at 10-30 steps the fast learners lead, at ``max_steps`` the
  well-tuned ones do. Observations carry noise (sd 0.008). The true front is computed exactly: for
  each total rank, a knapsack over the modules for the largest capacity, and a fine grid over the
  learning rate.

Both normalise the hypervolume so that the true front scores 1.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from paretune.search.algorithms.pareto import hypervolume, pareto_indices, to_min_form


@dataclass(frozen=True)
class Problem(ABC):
    """What every test problem shares: fidelities, objectives and the hypervolume box."""

    name: str = ""
    objectives: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    min_steps: int = 10
    max_steps: int = 270
    eta: int = 3

    def rungs(self) -> list[int]:
        out, s = [], self.min_steps
        while s < self.max_steps:
            out.append(s)
            s *= self.eta
        return [*out, self.max_steps]

    # the box the hypervolume is measured in, minimisation form
    @property
    @abstractmethod
    def ideal(self) -> list[float]: ...

    @property
    @abstractmethod
    def reference(self) -> list[float]: ...

    @abstractmethod
    def sample(self, trial: Any) -> dict[str, Any]: ...

    @abstractmethod
    def observe(
        self, params: dict[str, Any], step: int, rng: np.random.Generator
    ) -> dict[str, float]: ...

    @abstractmethod
    def true_values(self, params: dict[str, Any], step: int | None = None) -> dict[str, float]:
        """Noise-free values at ``step`` (default ``max_steps``)."""
        ...

    @abstractmethod
    def true_front(self) -> list[list[float]]:
        """The true Pareto front, minimisation form."""
        ...

    def min_form(self, values: dict[str, float]) -> list[float]:
        return to_min_form([values[o] for o in self.objectives], self.directions)

    def raw_hypervolume(self, points: list[list[float]]) -> float:
        lo, hi = self.ideal, self.reference
        scaled = [[(x - a) / (b - a) for x, a, b in zip(p, lo, hi, strict=True)] for p in points]
        return hypervolume(scaled, [1.0] * len(hi))

    @cached_property
    def front_hypervolume(self) -> float:
        return self.raw_hypervolume(self.true_front())

    def normalised_hypervolume(
        self, configs: list[dict[str, Any]], steps: list[int] | None = None
    ) -> float:
        """Hypervolume of the true values of ``configs`` (at ``steps``, default full fidelity),
        as a fraction of the true front's."""
        steps = steps if steps is not None else [self.max_steps] * len(configs)
        points = [
            self.min_form(self.true_values(c, s)) for c, s in zip(configs, steps, strict=True)
        ]
        return self.raw_hypervolume(points) / self.front_hypervolume


@dataclass(frozen=True)
class MFDTLZ2(Problem):
    name: str = "mf-dtlz2"
    objectives: tuple[str, ...] = ("f1", "f2")
    directions: tuple[str, ...] = ("minimize", "minimize")
    n_vars: int = 6
    tau: float = 30.0
    bias: float = 0.4
    noise: float = 0.01

    @property
    def ideal(self) -> list[float]:
        return [0.0, 0.0]

    @property
    def reference(self) -> list[float]:
        return [1.2, 1.2]

    def sample(self, trial: Any) -> dict[str, Any]:
        return {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(self.n_vars)}

    def _beta(self, step: float) -> float:
        end = math.exp(-self.max_steps / self.tau)
        return max(0.0, (math.exp(-step / self.tau) - end) / (1.0 - end))

    def _values(self, params: dict[str, Any], step: float, eps: float) -> dict[str, float]:
        x = [float(params[f"x{i}"]) for i in range(self.n_vars)]
        g = sum((xi - 0.5) ** 2 for xi in x[1:])
        g += self._beta(step) * self.bias * (1.0 + math.sin(2.0 * math.pi * (x[1] + x[2] - x[0])))
        g = max(0.0, g + eps)
        angle = x[0] * math.pi / 2.0
        return {"f1": (1.0 + g) * math.cos(angle), "f2": (1.0 + g) * math.sin(angle)}

    def observe(
        self, params: dict[str, Any], step: int, rng: np.random.Generator
    ) -> dict[str, float]:
        return self._values(params, step, float(rng.normal(0.0, self.noise)))

    def true_values(self, params: dict[str, Any], step: int | None = None) -> dict[str, float]:
        return self._values(params, self.max_steps if step is None else step, 0.0)

    def true_front(self) -> list[list[float]]:
        a = np.linspace(0.0, math.pi / 2.0, 201)
        return np.column_stack([np.cos(a), np.sin(a)]).tolist()

    @cached_property
    def front_hypervolume(self) -> float:
        # the box minus the quarter disc, exactly
        r = self.reference[0]
        return (r * r - math.pi / 4.0) / (r * r)


RANKS = (0, 4, 8, 16)
LAYERS = 6
TARGETS = ("query", "value")
HIDDEN = 384
HEAD = HIDDEN * 2 + 2
LAYER_WEIGHT = tuple(0.6 + 0.16 * layer for layer in range(LAYERS))
TARGET_WEIGHT = {"query": 0.8, "value": 1.2}
LOG_LR = (-4.5, -2.0)
MAX_RANK_SUM = RANKS[-1] * LAYERS * len(TARGETS)


@dataclass(frozen=True)
class PeftSurrogate(Problem):
    name: str = "peft-lora"
    objectives: tuple[str, ...] = ("accuracy", "trainable_params")
    directions: tuple[str, ...] = ("maximize", "minimize")
    noise: float = 0.008
    modules: tuple[tuple[int, str], ...] = field(
        default=tuple((layer, t) for layer in range(LAYERS) for t in TARGETS)
    )

    @property
    def max_params(self) -> int:
        return HEAD + MAX_RANK_SUM * 2 * HIDDEN

    @property
    def ideal(self) -> list[float]:
        return [-1.0, 0.0]

    @property
    def reference(self) -> list[float]:
        return [-0.7, float(self.max_params)]

    def sample(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            f"r.L{layer}.{t}": trial.suggest_categorical(f"r.L{layer}.{t}", RANKS)
            for layer, t in self.modules
        }
        # sampled as the service samples a spec's `learning_rate: {log: true}` (same name, bounds
        # and scale), so an in-process run and a service run see the very same floats
        lr = trial.suggest_float("learning_rate", 10 ** LOG_LR[0], 10 ** LOG_LR[1], log=True)
        params["log_lr"] = math.log10(lr)
        return params

    @staticmethod
    def _capacity_term(layer: int, target: str, rank: int) -> float:
        return LAYER_WEIGHT[layer] * TARGET_WEIGHT[target] * math.log2(1.0 + rank / 4.0)

    @staticmethod
    def _curve(capacity: float, rank_sum: int, log_lr: Any, step: float) -> Any:
        """Accuracy after ``step`` steps, noise-free (``log_lr`` may be an array)."""
        grow = rank_sum / MAX_RANK_SUM
        lr_opt = -2.7 - 0.6 * grow
        plateau = 0.62 + 0.31 * (1.0 - math.exp(-capacity / 6.0))
        plateau = plateau - 0.2 * np.maximum(0.0, log_lr - lr_opt) ** 2
        tau = 30.0 * 10.0 ** (1.2 * (lr_opt - log_lr)) * (1.0 + 0.5 * grow)
        return 0.5 + (plateau - 0.5) * (1.0 - np.exp(-step / tau))

    def _parts(self, params: dict[str, Any]) -> tuple[float, int]:
        ranks = {(layer, t): int(params[f"r.L{layer}.{t}"]) for layer, t in self.modules}
        capacity = sum(self._capacity_term(layer, t, r) for (layer, t), r in ranks.items())
        return capacity, sum(ranks.values())

    def trainable_params(self, params: dict[str, Any]) -> int:
        return HEAD + self._parts(params)[1] * 2 * HIDDEN

    def _values(self, params: dict[str, Any], step: float, eps: float) -> dict[str, float]:
        capacity, rank_sum = self._parts(params)
        acc = float(self._curve(capacity, rank_sum, float(params["log_lr"]), step)) + eps
        return {"accuracy": min(1.0, acc), "trainable_params": float(HEAD + rank_sum * 2 * HIDDEN)}

    def observe(
        self, params: dict[str, Any], step: int, rng: np.random.Generator
    ) -> dict[str, float]:
        return self._values(params, step, float(rng.normal(0.0, self.noise)))

    def true_values(self, params: dict[str, Any], step: int | None = None) -> dict[str, float]:
        return self._values(params, self.max_steps if step is None else step, 0.0)

    def true_front(self) -> list[list[float]]:
        best = self._best_capacity_by_rank_sum()
        grid = np.linspace(*LOG_LR, 2501)
        points = []
        for rank_sum, capacity in best.items():
            acc = float(np.max(self._curve(capacity, rank_sum, grid, self.max_steps)))
            points.append([-acc, float(HEAD + rank_sum * 2 * HIDDEN)])
        return [points[i] for i in pareto_indices(points)]

    def _best_capacity_by_rank_sum(self) -> dict[int, float]:
        """Knapsack: the largest capacity reachable with each total rank."""
        best: dict[int, float] = {0: 0.0}
        for layer, t in self.modules:
            nxt: dict[int, float] = {}
            for total, cap in best.items():
                for r in RANKS:
                    c = cap + self._capacity_term(layer, t, r)
                    if c > nxt.get(total + r, -1.0):
                        nxt[total + r] = c
            best = nxt
        return best


PROBLEMS: dict[str, type[Problem]] = {"mf-dtlz2": MFDTLZ2, "peft-lora": PeftSurrogate}
