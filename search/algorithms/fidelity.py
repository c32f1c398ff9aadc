"""Learning from partial results: which rung a step counts for, and a sampler fitted on rung values.

``search.sampler_fidelity`` says what the sampler's model learns from:

- ``full``: only full-fidelity results (the top rung, ``max_steps``);
- ``highest-rung``: the highest rung that holds enough observations, i.e. at least
  ``max(n_startup_trials, n_objectives + 2)``. Early in a study that is a low rung, where results
  are plentiful but biased; as the study goes on the model moves up the rungs to full fidelity.
  This is BOHB's idea (Falkner et al., 2018) made multi-objective: the model at a rung sees every
  trial that reached the rung, pruned or complete, with its objective values *at that rung*.

:class:`FidelityAwareAsker` keeps one in-memory Optuna "model" study per rung and asks the chosen
rung's sampler for a configuration, which is then enqueued into the real study: the stored study
stays truthful (PRUNED trials stay PRUNED, only full-fidelity values are COMPLETE) while the model
learns from partial results. It is also the right component for ``full``: Optuna's samplers see
multi-objective PRUNED trials without values (``Trial.report`` is refused for them) and TPE then
counts them in its "good" group arbitrarily; a model study of the top rung holds only true
full-fidelity values.

How a searcher uses it::

    asker = FidelityAwareAsker.from_spec(spec)
    asker.rebuild(history, study.get_trials(deepcopy=False))  # on resume
    trial = asker.ask(study, sample)       # an optuna.Trial of the real study, params fixed
    config = sample(trial)                 # define-by-run: returns the suggested values
    ...
    asker.observe(trial, step, metrics)    # every reported result (rung steps count)
    asker.finish(trial.number)             # the trial ended: completed, pruned or failed

``sample`` is the define-by-run function that draws a configuration from an Optuna trial (for
paretune: ``lambda t: spaces.sample_config(t, spec, dims)``).

When an objective is known before training (``trainable_params``; the searcher passes ``known``,
which counts a sampled configuration's), a fitted model makes :data:`CANDIDATES` proposals per
ask and keeps the one farthest along that objective from what it has tried (docs/search.md,
"Spreading proposals along a known objective").

A suggestion depends only on the observations, the seed, the rung and the number the real trial
will get: the model's sampler is seeded afresh for every ask. So a searcher rebuilt from the store
(a resume) proposes what an uninterrupted one would have, once the same results are in.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from paretune.search.algorithms.conditioned_floats import conditioned_floats
from paretune.search.algorithms.samplers import make_sampler
from paretune.spaces.combine import ideal_rate

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

N_STARTUP_TRIALS = 10  # observations of a rung before its model is fitted (random, or the design)
CANDIDATES = 8  # proposals a fitted rung model makes per ask when an objective is known up front
# the learning rate is modelled as its offset from the rate that suits the plan's size
RATE_ANCHORS: dict[str, Callable[[float], float]] = {"learning_rate": ideal_rate}
KNOWN_ATTR = "known_objective"  # a pending model trial's value of that objective
CONDITIONED_ATTR = "tpe_floats"  # a trial's continuous values as TPE proposed them, when replaced
SamplerFidelity = Literal["full", "highest-rung"]
SAMPLER_FIDELITIES: tuple[str, ...] = ("full", "highest-rung")
History = Iterable[tuple[int, int, Mapping[str, float]]]
Constraints = Callable[[Mapping[str, float]], Sequence[float] | None]
CONSTRAINTS_ATTR = "constraints"  # user attribute: what the front, report and dashboard read
OPTUNA_CONSTRAINTS_KEY = "constraints"  # system attribute Optuna reads as ``trial.constraints``


def constraint_attrs(violations: Sequence[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The user and system attributes that record measured-constraint violations (<= 0 feasible).

    The system attribute is what Optuna's samplers read (``trial.constraints``): infeasible trials
    go to TPE's worse group, lose NSGA-II's constrained domination and feed GP's constraint model.
    """
    values = [float(v) for v in violations]
    return {CONSTRAINTS_ATTR: values}, {OPTUNA_CONSTRAINTS_KEY: tuple(values)}


def record_violations(storage: Any, trial_id: int, violations: Sequence[float]) -> None:
    """Store a trial's violations, as :func:`constraint_attrs` names them, before it is told."""
    user_attrs, system_attrs = constraint_attrs(violations)
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for key, value in system_attrs.items():
        storage.set_trial_system_attr(trial_id, key, value)


def rung_at(rungs: Sequence[int], step: float) -> int | None:
    """Index of the highest rung at or below ``step``; None below the first rung.

    A result counts for the highest milestone it has reached, so a trial evaluated off the rungs
    (``eval_every`` not aligned with them) still records once per rung, as Ray's ASHA does.
    """
    i = bisect.bisect_right(rungs, step) - 1
    return i if i >= 0 else None


def objective_values(values: Mapping[str, float], objectives: Sequence[str]) -> list[float] | None:
    """The objective values in objective order, or None when one is missing."""
    try:
        return [float(values[name]) for name in objectives]
    except (KeyError, TypeError, ValueError):
        return None


TIE_BREAK_METRIC = "eval_loss"
TIE_BREAK_WEIGHT = 1e-9  # far below one example's share of an accuracy, so only ties move
TIE_BROKEN = ("accuracy", "macro_f1")  # counts of examples: equal values are common early on


def rung_values(values: Mapping[str, float], objectives: Sequence[str]) -> list[float] | None:
    """The objective values, each accuracy-like one with ``eval_loss`` as its tie-break.

    Early in training every small and large plan alike often predicts the majority class: their
    accuracies are equal, and a smaller plan then dominates every larger one, so a rung ranked on
    (accuracy, trainable_params) promotes by size alone (docs/search.md, "Real tasks"). The loss
    moves before the accuracy does: subtracting ``TIE_BREAK_WEIGHT * eval_loss`` from an
    accuracy-like objective orders equal accuracies by loss and changes no other comparison (one
    validation example in 10^5 is worth 10^-5, the nudge at a loss of 100 is 10^-7). Results
    without a finite ``eval_loss``, or studies that optimise it themselves, are left as they are.
    """
    vals = objective_values(values, objectives)
    if vals is None or TIE_BREAK_METRIC in objectives:
        return vals
    try:
        loss = float(values[TIE_BREAK_METRIC])
    except (KeyError, TypeError, ValueError):
        return vals
    if not math.isfinite(loss):
        return vals
    return [
        v - TIE_BREAK_WEIGHT * loss if name in TIE_BROKEN else v
        for name, v in zip(objectives, vals, strict=True)
    ]


@dataclass
class _Pending:
    rung: int
    trial: Any  # optuna.Trial of a model study
    params: dict[str, Any]


@dataclass
class FidelityAwareAsker:
    """Suggests configurations from a sampler fitted on the highest rung with enough observations.

    ``rungs`` are the fidelities (``spec.search.rungs()``); ``objectives`` and ``directions`` those
    of the study. ``mode="full"`` uses only the top rung. ``constraints`` maps a result's metrics
    to measured-constraint violations (<= 0 feasible; None: no constraint), which the model's
    sampler then respects as the study's does. Deterministic for a given ``seed`` and the same
    sequence of calls.
    """

    rungs: Sequence[int]
    objectives: Sequence[str]
    directions: Sequence[str]
    sampler: str = "tpe"
    seed: int = 0
    mode: SamplerFidelity = "highest-rung"
    n_startup_trials: int = N_STARTUP_TRIALS
    min_observations: int | None = None
    constraints: Constraints | None = None
    known: Callable[[Any], float] | None = None
    known_objective: str = "trainable_params"
    candidates: int = CANDIDATES
    condition_floats: bool = True
    startup: Sequence[Mapping[str, Any]] = ()
    group: bool = False
    _studies: list[Any] = field(init=False, repr=False)
    _pending: dict[Hashable, _Pending] = field(init=False, repr=False)
    _seen: dict[Hashable, set[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import optuna  # noqa: PLC0415

        if self.mode not in SAMPLER_FIDELITIES:
            raise ValueError(
                f"unknown sampler_fidelity {self.mode!r}; allowed: {', '.join(SAMPLER_FIDELITIES)}"
            )
        self.rungs = [int(r) for r in self.rungs]
        self._studies = [
            optuna.create_study(directions=list(self.directions), sampler=self._sampler(k, 0))
            for k in range(len(self.rungs))
        ]
        self._pending = {}
        self._seen = {}

    @classmethod
    def from_spec(
        cls,
        spec: Any,
        *,
        n_startup_trials: int = N_STARTUP_TRIALS,
        constraints: Constraints | None = None,
        known: Callable[[Any], float] | None = None,
        startup: Sequence[Mapping[str, Any]] = (),
    ) -> FidelityAwareAsker:
        """The asker a :class:`~paretune.spaces.StudySpec` asks for; ``known`` maps what the
        sampling function returns to its ``trainable_params``; ``startup`` holds the (partial)
        parameters of the first trials (:func:`paretune.spaces.startup_params`)."""
        s = spec.search
        return cls(
            rungs=s.rungs(),
            objectives=spec.objective_names,
            directions=spec.directions,
            sampler=s.sampler,
            seed=s.seed,
            mode=s.sampler_fidelity,
            n_startup_trials=n_startup_trials,
            constraints=constraints,
            known=known,
            startup=tuple(startup),
            group=spec.space.combine is not None,
        )

    def _sampler(self, rung: int, number: int, candidate: int = 0) -> Any:
        """The model sampler of ``rung`` for the real trial ``number``'s ``candidate``-th
        proposal, seeded by all three."""
        return make_sampler(
            self.sampler,
            seed=(self.seed + 7919 * (rung + 1) + 104_729 * number + 15_485_863 * candidate)
            % 2**32,
            n_startup_trials=self.n_startup_trials,
            group=self.group,
        )

    # -- which rung the model learns from ------------------------------------------------------

    @property
    def threshold(self) -> int:
        """Observations a rung needs before its model may suggest."""
        if self.min_observations is not None:
            return self.min_observations
        return max(self.n_startup_trials, len(self.objectives) + 2)

    def n_observations(self, rung: int) -> int:
        """Finished observations in the model study of rung index ``rung``."""
        import optuna  # noqa: PLC0415

        return len(
            self._studies[rung].get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
            )
        )

    def model_study(self, rung: int) -> optuna.Study:
        """The in-memory model study of rung index ``rung`` (its trials are the observations)."""
        return self._studies[rung]

    def pending_rung(self, number: Hashable) -> int | None:
        """The rung index whose model suggested trial ``number``, while it waits for that rung."""
        pending = self._pending.get(number)
        return None if pending is None else pending.rung

    def model_rung(self) -> int:
        """The rung index whose model suggests next.

        The highest eligible rung (``full``: only the top one). When none holds enough
        observations, the top rung's study, whose sampler is then still in its start-up phase
        (independent random sampling, seeded).
        """
        top = len(self.rungs) - 1
        candidates = [top] if self.mode == "full" else range(top, -1, -1)
        for k in candidates:
            if self.n_observations(k) >= self.threshold:
                return k
        return top

    # -- asking ------------------------------------------------------------------------------

    def suggest(self, sample: Callable[[Any], object], number: int = 0) -> tuple[int, Any]:
        """Ask the model study of :meth:`model_rung` for the real trial ``number``: returns
        (rung index, its model trial). The sampler is seeded by the seed, the rung and ``number``."""
        k = self.model_rung()
        study = self._studies[k]
        if self._spreads(k):
            chosen = self._most_distinct(k, sample, number)
            return k, self._condition_floats(k, chosen, sample, number)
        study.sampler = self._sampler(k, number)
        if number < len(self.startup) and self.n_observations(k) < self.threshold:
            study.enqueue_trial(dict(self.startup[number]))  # the sampler draws the rest
        model_trial = study.ask()
        try:
            drawn = sample(model_trial)
            if self._knows:
                model_trial.set_user_attr(KNOWN_ATTR, float(self.known(drawn)))  # type: ignore[misc]
        except BaseException:
            study.tell(model_trial, state=_fail_state())
            raise
        return k, model_trial

    @property
    def _knows(self) -> bool:
        """Whether an objective is known before training (and how to count it)."""
        return self.known is not None and self.known_objective in self.objectives

    def _spreads(self, k: int) -> bool:
        """Whether rung ``k``'s model picks among several proposals by the known objective: only
        once it is fitted (past its start-up)."""
        return self._knows and self.candidates > 1 and self.n_observations(k) >= self.threshold

    def _most_distinct(self, k: int, sample: Callable[[Any], object], number: int) -> Any:
        """Of ``candidates`` proposals of rung ``k``'s model, the one whose known objective (log
        scale) lies farthest from every observed or pending trial's; the rest are withdrawn.

        Each proposal is one the model rates well (TPE: the best of its own candidates); the
        known objective (trainable parameters) says before any training which of them would
        fill a gap along the front. Measured in docs/search.md."""
        import optuna  # noqa: PLC0415

        study = self._studies[k]
        index = list(self.objectives).index(self.known_objective)
        complete, running = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING
        taken = [t.values[index] for t in study.get_trials(deepcopy=False, states=(complete,))]
        taken += [
            t.user_attrs[KNOWN_ATTR]
            for t in study.get_trials(deepcopy=False, states=(running,))
            if KNOWN_ATTR in t.user_attrs
        ]
        taken_logs = [math.log1p(max(v, 0.0)) for v in taken]
        asked: list[Any] = []
        values: list[float] = []
        try:
            for j in range(self.candidates):
                study.sampler = self._sampler(k, number, j)
                asked.append(study.ask())
                values.append(float(self.known(sample(asked[-1]))))  # type: ignore[misc]
        except BaseException:
            for trial in asked:
                study.tell(trial, state=_fail_state())
            raise

        def gap(value: float) -> float:
            x = math.log1p(max(value, 0.0))
            return min((abs(x - t) for t in taken_logs), default=0.0)

        best = max(range(len(asked)), key=lambda j: (gap(values[j]), -j))
        for j, trial in enumerate(asked):
            if j != best:
                study.tell(trial, state=_fail_state())
        asked[best].set_user_attr(KNOWN_ATTR, values[best])
        return asked[best]

    def _condition_floats(
        self, k: int, chosen: Any, sample: Callable[[Any], object], number: int
    ) -> Any:
        """``chosen`` (a pending trial of rung ``k``'s model) with its continuous parameters
        re-chosen for its known objective by :func:`conditioned_floats`, fitted on the top rung's
        observations; ``chosen`` itself when that model has nothing to say (too few full-fidelity
        results, no continuous parameter, or more than one objective besides the known one)."""
        import optuna  # noqa: PLC0415

        if not self.condition_floats or len(self.objectives) != 2:
            return chosen
        index = list(self.objectives).index(self.known_objective)
        other = 1 - index
        top = self._studies[-1].get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        observations = [(t.params, t.values[index], t.values[other]) for t in top]
        distributions = dict(chosen.distributions)
        for t in top:
            distributions.update(t.distributions)
        floats = conditioned_floats(
            chosen.params,
            distributions,
            chosen.user_attrs[KNOWN_ATTR],
            observations,
            maximize=self.directions[other] == "maximize",
            seed=(self.seed + 104_729 * number) % 2**32,
            anchors=RATE_ANCHORS if self.known_objective == "trainable_params" else None,
        )
        if floats is None or all(chosen.params[n] == v for n, v in floats.items()):
            return chosen
        study = self._studies[k]
        study.tell(chosen, state=_fail_state())
        study.enqueue_trial({**chosen.params, **floats})
        study.sampler = self._sampler(k, number)
        trial = study.ask()
        try:
            trial.set_user_attr(KNOWN_ATTR, float(self.known(sample(trial))))  # type: ignore[misc]
            trial.set_user_attr(CONDITIONED_ATTR, {n: chosen.params[n] for n in floats})
        except BaseException:
            study.tell(trial, state=_fail_state())
            raise
        return trial

    def ask(self, study: optuna.Study, sample: Callable[[Any], object]) -> optuna.Trial:
        """A trial of the real ``study`` whose parameters the rung model chose.

        The parameters are enqueued (``study.enqueue_trial``) and the next ``study.ask()`` takes
        them. If the study already holds waiting trials (retries queued on resume), those go first
        and no model is asked. The model trial stays running in its model study until the real
        trial reports at that rung, so concurrent asks see it (the constant liar).
        """
        import optuna  # noqa: PLC0415

        trials = study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return study.ask()
        k, model_trial = self.suggest(sample, len(trials))  # len(trials): the number it will get
        params = dict(model_trial.params)
        study.enqueue_trial(params)
        trial = study.ask()
        if CONDITIONED_ATTR in model_trial.user_attrs:  # say what the size model replaced
            trial.set_user_attr(CONDITIONED_ATTR, model_trial.user_attrs[CONDITIONED_ATTR])
        self._pending[trial.number] = _Pending(k, model_trial, params)
        log.debug(
            "trial %d: parameters from the model at rung %d (%d steps)",
            trial.number,
            k,
            self.rungs[k],
        )
        return trial

    # -- learning ----------------------------------------------------------------------------

    def observe(self, trial: Any, step: float, values: Mapping[str, float]) -> None:
        """Record a reported result: at a rung it becomes an observation of that rung's model.

        ``trial`` has ``number``, ``params`` and ``distributions`` (an ``optuna.Trial`` or a
        ``FrozenTrial``); ``values`` maps objective names to values (extra keys are ignored). A
        result off the rungs, a second result at the same rung, or one lacking an objective or
        holding a non-finite value is ignored.
        """
        key = trial.number
        k = rung_at(self.rungs, step)
        # below the top rung equal accuracies are ordered by eval_loss, as the scheduler orders
        # them; the top rung's model keeps the true full-fidelity values
        top = k is not None and k == len(self.rungs) - 1
        vals = (objective_values if top else rung_values)(values, self.objectives)
        if k is None or vals is None or not all(math.isfinite(v) for v in vals):
            return
        seen = self._seen.setdefault(key, set())
        if k in seen:
            return
        seen.add(k)
        violations = self.constraints(values) if self.constraints is not None else None
        pending = self._pending.get(key)
        study = self._studies[k]
        if pending is not None and pending.rung == k:
            del self._pending[key]
            if pending.params == dict(trial.params):
                if violations is not None:
                    record_violations(study._storage, pending.trial._trial_id, violations)
                study.tell(pending.trial, vals)
                return
            study.tell(pending.trial, state=_fail_state())
        self._add(study, dict(trial.params), dict(trial.distributions), vals, violations)

    def finish(self, number: Hashable) -> None:
        """The trial ended; a model trial still waiting for its rung is withdrawn (FAIL)."""
        pending = self._pending.pop(number, None)
        if pending is not None:
            self._studies[pending.rung].tell(pending.trial, state=_fail_state())

    def rebuild(self, history: History, trials: Iterable[Any]) -> None:
        """Refill the rung models from stored results: (trial_number, step, metrics) rows and
        the study's trials (FrozenTrials, for their parameters and distributions)."""
        n = self.record_results(history, trials)
        log.info("fidelity models rebuilt from %d stored results", n)

    def record_results(self, results: History, trials: Iterable[Any]) -> int:
        """Observe results of ``trials`` (stored ones on resume, other drivers' while running);
        returns how many had a trial with parameters."""
        by_number = {t.number: t for t in trials}
        n = 0
        for number, step, metrics in sorted(results, key=lambda h: (h[0], h[1])):
            trial = by_number.get(number)
            if trial is not None and trial.params:
                self.observe(trial, step, metrics)
                n += 1
        return n

    @staticmethod
    def _add(
        study: Any,
        params: dict[str, Any],
        distributions: dict[str, Any],
        values: list[float],
        violations: Sequence[float] | None,
    ) -> None:
        import optuna  # noqa: PLC0415

        user_attrs, system_attrs = (
            constraint_attrs(violations) if violations is not None else ({}, {})
        )
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                values=values,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        )


def _fail_state() -> Any:
    import optuna  # noqa: PLC0415

    return optuna.trial.TrialState.FAIL
