"""Multi-objective multi-fidelity schedulers: which trials go on at each rung.

Fidelity is training steps; rungs sit at ``min_steps * eta^k`` up to ``max_steps``
(``spec.search.rungs()``). The decision logic lives in plain-Python classes, with no Ray in them,
so that it is unit-testable and the in-process benchmark runs it as it is:

- :class:`MOSuccessiveHalving` (``mo-asha``): asynchronous successive halving. When a trial
  reports at a rung, its result joins every result recorded at that rung and the
  :class:`~paretune.search.algorithms.ranking.RankingStrategy` orders them (default: non-dominated sorting,
  ties inside a front broken by an epsilon-net). The trial goes on when its 0-based rank is below
  ``ceil(n / eta)``, ``n`` counting the results at the rung including its own: the top ``1/eta``
  rounded up, so the first trial at a rung always goes on, and while a rung holds at most ``eta``
  results only the best of them does. ``max_steps`` ends a trial (it is then complete, not
  stopped early).
- :class:`MOHyperband` (``mo-hyperband``, the default): one :class:`MOSuccessiveHalving` bracket
  per rung, bracket ``s`` starting at rung ``s`` (``min_steps * eta^s``); the last bracket trains
  every trial to ``max_steps``. A trial's bracket is drawn with Hyperband's weights (bracket ``s``
  in proportion to the trials its synchronous Hyperband bracket would start,
  ``ceil((s_max + 1) / (s_max - s + 1) * eta^(s_max - s))``), from a generator seeded by the
  study seed and the trial's number: the same trial always lands in the same bracket, across
  resumes and drivers. Trials in ``full_fidelity`` (the start-up's canonical configurations,
  one per family: :func:`full_fidelity_trials`) go to the last bracket instead: a family's one
  sure try is not judged on a 20-step result.
- :class:`FullFidelity` (``none``): every trial to ``max_steps``.

Every one has ``on_result(trial_key, step, values) -> "continue" | "stop"`` and
``rebuild(history)``: on resume the rungs are refilled from the stored metrics, so the decisions
that follow are those an uninterrupted run would make on the same results.

:func:`make_trial_scheduler` wraps the core named by the spec in :class:`ParetoTrialScheduler`,
a Ray Tune ``TrialScheduler``. Results carry ``trial_number``, ``step`` and the objectives.
"""

from __future__ import annotations

import logging
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Any, Literal

from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from paretune.search.algorithms.fidelity import N_STARTUP_TRIALS, History, rung_at, rung_values
from paretune.search.algorithms.pareto import dominates, to_min_form
from paretune.search.algorithms.ranking import EpsilonNetRanking, RankingStrategy, as_points
from paretune.spaces.errors import UserError

log = logging.getLogger(__name__)

Action = Literal["continue", "stop"]
Decision = dict[str, Any]
DecisionCallback = Callable[[Decision], None]
SCHEDULERS: tuple[str, ...] = ("mo-hyperband", "mo-asha", "none")


def _sort_key(key: Hashable) -> tuple[str, Any]:
    """Trials in a canonical order (numbers numerically), whatever order they arrived in."""
    return (type(key).__name__, key)


class SchedulerCore(ABC):
    """The plain-Python decision logic a :class:`ParetoTrialScheduler` wraps.

    Holds the rungs, the objectives with their directions and the decision callback (never
    pickled: a callback into the store does not travel with a checkpoint).
    """

    def __init__(
        self,
        rungs: Sequence[int],
        objectives: Sequence[str],
        directions: Sequence[str],
        on_decision: DecisionCallback | None = None,
    ) -> None:
        if not rungs or list(rungs) != sorted(set(rungs)):
            raise ValueError(f"rungs must be increasing, got {list(rungs)}")
        if len(objectives) != len(directions):
            raise ValueError("one direction per objective")
        self.rungs = [int(r) for r in rungs]
        self.objectives = list(objectives)
        self.directions = list(directions)
        self.on_decision = on_decision

    @property
    def max_steps(self) -> int:
        return self.rungs[-1]

    def on_result(self, trial_key: Hashable, step: float, values: Mapping[str, float]) -> Action:
        """Record a result and decide: "stop" at ``max_steps`` or when outranked at a rung."""
        action, decision = self.evaluate(trial_key, step, values)
        if decision is not None:
            log.debug("decision %s", decision)
            if self.on_decision is not None:
                self.on_decision(decision)
        return action

    @abstractmethod
    def evaluate(
        self, trial_key: Hashable, step: float, values: Mapping[str, float]
    ) -> tuple[Action, Decision | None]:
        """The action for a result, and the decision to log when the result was at a rung."""
        ...

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["on_decision"] = None  # a callback into the store does not travel
        return state

    def rebuild(self, history: History) -> None:
        """Record stored results without deciding (and without calling ``on_decision``)."""
        n = self.record_results(history)
        log.info("scheduler rungs rebuilt from %d stored results", n)

    def record_results(self, results: History) -> int:
        """Record results without deciding: stored ones on resume, other drivers' while running.

        A result already recorded at its rung is skipped. Returns how many were recorded."""
        n = 0
        for key, step, metrics in sorted(results, key=lambda h: (_sort_key(h[0]), h[1])):
            n += self._record(key, step, metrics) is not None
        return n

    @abstractmethod
    def _record(self, key: Hashable, step: float, values: Mapping[str, float]) -> Any: ...


class MOSuccessiveHalving(SchedulerCore):
    """Asynchronous multi-objective successive halving over ``rungs`` (one bracket).

    ``rungs`` are this bracket's fidelities, ending at ``max_steps``; ``eta`` keeps the top
    ``1/eta`` at each rung (rounded up). ``ranking`` orders the results at a rung.
    """

    def __init__(
        self,
        rungs: Sequence[int],
        objectives: Sequence[str],
        directions: Sequence[str],
        *,
        eta: float = 3,
        ranking: RankingStrategy | None = None,
        on_decision: DecisionCallback | None = None,
        bracket: int = 0,
        finish_undominated: bool = True,
    ) -> None:
        super().__init__(rungs, objectives, directions, on_decision)
        if eta <= 1:
            raise ValueError(f"eta must be > 1, got {eta}")
        self.eta = eta
        self.ranking = ranking if ranking is not None else EpsilonNetRanking()
        self.bracket = bracket
        self.finish_undominated = finish_undominated
        self.records: list[dict[Hashable, list[float]]] = [{} for _ in self.rungs]
        self.siblings: list[MOSuccessiveHalving] = [self]  # brackets whose complete trials count

    def evaluate(
        self, trial_key: Hashable, step: float, values: Mapping[str, float]
    ) -> tuple[Action, Decision | None]:
        k = self._record(trial_key, step, values)
        if step >= self.max_steps:
            top = len(self.rungs) - 1
            if k is None:
                return "stop", None  # reported again at max_steps
            return "stop", self._decision(
                trial_key, top, 0, len(self.records[top]), "stop", "max_steps"
            )
        if k is None:  # below the bracket's first rung, at a rung decided already, or incomplete
            return "continue", None
        decision = self.decide(trial_key, k)
        return ("continue" if decision["action"] == "promote" else "stop"), decision

    def decide(self, trial_key: Hashable, k: int) -> Decision:
        """Rank ``trial_key`` among the results at rung index ``k`` and decide."""
        keys = sorted(self.records[k], key=_sort_key)
        points = as_points([self.records[k][key] for key in keys])
        rank = self.ranking.position(points, keys.index(trial_key))
        n = len(keys)
        keep = math.ceil(n / self.eta)
        if n == 1:
            return self._decision(trial_key, k, rank, n, "promote", "first_at_rung", keep=keep)
        if rank < keep:
            return self._decision(trial_key, k, rank, n, "promote", "top_fraction", keep=keep)
        if self.finish_undominated and self._undominated(self.records[k][trial_key]):
            return self._decision(
                trial_key, k, rank, n, "promote", "undominated_by_complete", keep=keep
            )
        return self._decision(trial_key, k, rank, n, "stop", "outranked", keep=keep)

    def _undominated(self, point: Sequence[float]) -> bool:
        """Whether complete trials exist and none of them dominates ``point`` (min form)."""
        complete = [v for b in self.siblings for v in b.records[-1].values()]
        return bool(complete) and not any(dominates(q, point) for q in complete)

    def _record(self, key: Hashable, step: float, values: Mapping[str, float]) -> int | None:
        """Store the result at its rung; the rung index if newly recorded there, else None."""
        k = rung_at(self.rungs, step)
        vals = rung_values(values, self.objectives)
        if k is None or vals is None or key in self.records[k]:
            return None
        self.records[k][key] = to_min_form(vals, self.directions)
        return k

    def _decision(
        self, key: Hashable, k: int, rank: int, n: int, action: str, reason: str, **extra: Any
    ) -> Decision:
        return {
            "trial_number": key,
            "rung": self.rungs[k],
            "rank": rank,
            "n_at_rung": n,
            "action": action,
            "reason": reason,
            "bracket": self.bracket,
            **extra,
        }

    def n_at(self, rung: int) -> int:
        """Results recorded at the rung of ``rung`` steps."""
        return len(self.records[self.rungs.index(rung)])


def hyperband_weights(n_brackets: int, eta: float) -> list[int]:
    """Trials each synchronous Hyperband bracket would start; bracket s starts at rung s."""
    s_max = n_brackets - 1
    return [
        math.ceil((s_max + 1) / (s_max - s + 1) * eta ** (s_max - s)) for s in range(n_brackets)
    ]


class MOHyperband(SchedulerCore):
    """Asynchronous multi-objective Hyperband: one successive-halving bracket per starting rung.

    ``weights`` (one per bracket, default Hyperband's) set how often each bracket is drawn; a
    zero leaves a bracket out. ``seed`` with the trial key fixes each trial's bracket.
    """

    def __init__(
        self,
        rungs: Sequence[int],
        objectives: Sequence[str],
        directions: Sequence[str],
        *,
        eta: float = 3,
        seed: int = 0,
        weights: Sequence[float] | None = None,
        ranking: RankingStrategy | None = None,
        on_decision: DecisionCallback | None = None,
        finish_undominated: bool = True,
        full_fidelity: Collection[Hashable] = (),
    ) -> None:
        super().__init__(rungs, objectives, directions, on_decision)
        n = len(self.rungs)
        self.weights = list(hyperband_weights(n, eta) if weights is None else weights)
        if len(self.weights) != n or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"one non-negative weight per rung ({n}), not all 0: {self.weights}")
        self.seed = seed
        self.eta = eta
        self.brackets = [
            MOSuccessiveHalving(
                self.rungs[s:],
                objectives,
                directions,
                eta=eta,
                ranking=ranking,
                bracket=s,
                finish_undominated=finish_undominated,
            )
            for s in range(n)
        ]
        for bracket in self.brackets:  # every bracket ends at max_steps: one set of complete trials
            bracket.siblings = self.brackets
        self.full_fidelity = frozenset(full_fidelity)
        self._assigned: dict[Hashable, int] = {}

    def bracket_of(self, trial_key: Hashable) -> int:
        """The trial's bracket: the last one for a ``full_fidelity`` trial, else a draw with
        Hyperband's weights, fixed by (seed, trial key)."""
        if trial_key in self.full_fidelity:
            return len(self.brackets) - 1
        s = self._assigned.get(trial_key)
        if s is None:
            rng = random.Random(f"paretune-bracket:{self.seed}:{trial_key}")
            s = rng.choices(range(len(self.brackets)), weights=self.weights)[0]
            self._assigned[trial_key] = s
        return s

    def evaluate(
        self, trial_key: Hashable, step: float, values: Mapping[str, float]
    ) -> tuple[Action, Decision | None]:
        return self.brackets[self.bracket_of(trial_key)].evaluate(trial_key, step, values)

    def _record(self, key: Hashable, step: float, values: Mapping[str, float]) -> int | None:
        return self.brackets[self.bracket_of(key)]._record(key, step, values)


class FullFidelity(SchedulerCore):
    """No early stopping: every trial runs to ``max_steps``."""

    def __init__(
        self,
        rungs: Sequence[int],
        objectives: Sequence[str],
        directions: Sequence[str],
        on_decision: DecisionCallback | None = None,
    ) -> None:
        super().__init__(rungs, objectives, directions, on_decision)
        self._done: set[Hashable] = set()

    def evaluate(
        self, trial_key: Hashable, step: float, values: Mapping[str, float]
    ) -> tuple[Action, Decision | None]:
        if step < self.max_steps:
            return "continue", None
        if trial_key in self._done:
            return "stop", None
        self._done.add(trial_key)
        decision = {
            "trial_number": trial_key,
            "rung": self.max_steps,
            "rank": 0,
            "n_at_rung": len(self._done),
            "action": "stop",
            "reason": "max_steps",
            "bracket": 0,
        }
        return "stop", decision

    def _record(self, key: Hashable, step: float, values: Mapping[str, float]) -> int | None:
        if step >= self.max_steps:
            self._done.add(key)
            return 0
        return None


def full_fidelity_trials(spec: Any) -> range:
    """The trial numbers ``mo-hyperband`` trains to ``max_steps`` whatever their bracket draw:
    the start-up's canonical configurations (one per family, :func:`paretune.spaces.combine.
    canonical_count`), which a study proposes first.

    Measured on real fine-tunes (docs/search.md, "Real tasks"): at the 20-step rung every small
    plan on ``vader-tweets`` sits at the majority rate, so a family whose one canonical try drew
    the lowest bracket was stopped there (BitFit, 0.868 validation accuracy at 60 steps)."""
    from paretune.spaces.combine import canonical_count  # noqa: PLC0415

    return range(min(canonical_count(spec.space), N_STARTUP_TRIALS))


def make_core(
    spec: Any,
    on_decision: DecisionCallback | None = None,
    *,
    ranking: RankingStrategy | None = None,
) -> SchedulerCore:
    """The plain-Python scheduler core a :class:`~paretune.spaces.StudySpec` names."""
    s = spec.search
    rungs, objectives, directions = s.rungs(), spec.objective_names, spec.directions
    if s.scheduler == "mo-hyperband":
        return MOHyperband(
            rungs,
            objectives,
            directions,
            eta=s.eta,
            seed=s.seed,
            ranking=ranking,
            on_decision=on_decision,
            finish_undominated=s.finish_undominated,
            full_fidelity=full_fidelity_trials(spec),
        )
    if s.scheduler == "mo-asha":
        return MOSuccessiveHalving(
            rungs,
            objectives,
            directions,
            eta=s.eta,
            ranking=ranking,
            on_decision=on_decision,
            finish_undominated=s.finish_undominated,
        )
    if s.scheduler == "none":
        return FullFidelity(rungs, objectives, directions, on_decision=on_decision)
    raise UserError(f"unknown scheduler {s.scheduler!r}; allowed: {', '.join(SCHEDULERS)}")


class ParetoTrialScheduler(FIFOScheduler):
    """A Ray Tune ``TrialScheduler`` around a plain-Python core.

    Each result must carry ``step`` (``training_iteration`` is the fallback) and every objective;
    the trial's key is its ``trial_number`` (Ray's ``trial_id`` when absent). Results lacking an
    objective never stop a trial. Trials run first-in first-out, as with Ray's ``FIFOScheduler``.
    """

    _supports_buffered_results = False  # every result must reach the rung logic

    def __init__(
        self, core: SchedulerCore, *, step_key: str = "step", key_field: str = "trial_number"
    ) -> None:
        super().__init__()
        self.core = core
        self.step_key = step_key
        self.key_field = key_field
        self._n_stopped = 0
        self._poll_shared: Callable[[], object] | None = None

    def follow(self, shared: Any) -> None:
        """Rank each result also among other drivers' results of the study.

        ``shared`` is a :class:`~paretune.search.service.shared_results.SharedResults`: before each
        decision it is polled (rate-limited), and what it delivers is recorded at its rung."""
        shared.subscribe(lambda results: self.core.record_results(results))
        self._poll_shared = shared.poll

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        # The objectives and directions come from the study spec, never from Tune's single metric.
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        step = result.get(self.step_key, result.get("training_iteration"))
        if step is None:
            return TrialScheduler.CONTINUE
        key = result.get(self.key_field, trial.trial_id)
        if self._poll_shared is not None:
            self._poll_shared()
        if self.core.on_result(key, step, result) == "stop":
            self._n_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"paretune {type(self.core).__name__}: {self._n_stopped} trials stopped"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_poll_shared"] = None  # holds the store: Tune pickles its config (tuner.pkl)
        return state

    def save(self, checkpoint_path: str) -> None:
        import pickle  # noqa: PLC0415

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.core, f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle  # noqa: PLC0415

        callback = self.core.on_decision
        with open(checkpoint_path, "rb") as f:
            self.core = pickle.load(f)  # noqa: S301 - written by save() above
        self.core.on_decision = callback


def make_trial_scheduler(
    spec: Any,
    on_decision: DecisionCallback | None = None,
    history: History = (),
) -> TrialScheduler:
    """The Ray Tune scheduler for ``spec`` (a :class:`~paretune.spaces.StudySpec`).

    ``on_decision`` receives every rung decision as a dict with ``trial_number``, ``rung``,
    ``rank``, ``n_at_rung``, ``action`` ("promote" or "stop"), ``reason`` ("first_at_rung",
    "top_fraction", "undominated_by_complete", "outranked" or "max_steps": a trial stopped for
    ``max_steps`` is complete) and
    ``bracket``. ``history`` holds (trial_number, step, metrics) rows rebuilt from the store on
    resume; the rungs are refilled from them before the first new result.
    """
    core = make_core(spec, on_decision)
    core.rebuild(history)
    return ParetoTrialScheduler(core)
