"""The Pareto front of a study, its reference point, and the hypervolume recorded after each trial.

The front is :func:`paretune.search.algorithms.pareto.front_trials`: COMPLETE, feasible trials at full
fidelity (the rule the CLI and the dashboard use too).

The reference point bounds the hypervolume. It comes from ``search.reference_point`` for the
objectives the spec names there; every other objective gets a derived value:

- ``accuracy``, ``macro_f1``: 0 (worse than any classifier);
- ``eval_loss``: 2.0;
- ``trainable_params``: the largest count the search space allows;
- ``train_seconds``, ``peak_memory_mb``: twice the value of the first COMPLETE trial.

The whole point is fixed when the first COMPLETE trial arrives and stored as a
``reference_point`` event, so it never moves afterwards (resume, new drivers, more trials): the
hypervolume history of one study is comparable from its first value to its last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from paretune.search.algorithms.pareto import (
    complete_feasible,
    front_trials,
    hypervolume,
    to_min_form,
)
from paretune.search.store.study_store import StudyStore

log = logging.getLogger(__name__)

FIXED_REFERENCE = {
    "accuracy": 0.0,
    "macro_f1": 0.0,
    "eval_loss": 2.0,  # a classifier's cross-entropy: 2 nats is worse than guessing 7 classes
    "token_accuracy": 0.0,
    "exact_match": 0.0,
}
RELATIVE_REFERENCE = ("train_seconds", "peak_memory_mb")  # 2x the first COMPLETE trial
# a language model's loss has no scale fixed in advance (the vocabulary and the text set it)
RELATIVE_FOR_TASK = {"causal_lm": ("eval_loss", "perplexity")}
REFERENCE_EVENT = "reference_point"


def derive_reference(
    objectives: Sequence[str],
    *,
    max_params: int,
    first_values: dict[str, float] | None,
    given: dict[str, float] | None = None,
    task: str = "classification",
) -> dict[str, float] | None:
    """The reference point (objective name -> value), or None while it needs a first trial."""
    given = given or {}
    point: dict[str, float] = {}
    relative = (*RELATIVE_REFERENCE, *RELATIVE_FOR_TASK.get(task, ()))
    for name in objectives:
        if name in given:
            point[name] = float(given[name])
        elif name in relative:
            if first_values is None or name not in first_values:
                return None
            point[name] = 2.0 * float(first_values[name])
        elif name in FIXED_REFERENCE:
            point[name] = FIXED_REFERENCE[name]
        elif name == "trainable_params":
            point[name] = float(max_params)
        else:  # an objective added later without a rule: 0 is wrong for minimised ones, so say so
            raise ValueError(
                f"no reference-point rule for objective {name!r}; set search.reference_point"
            )
    return point


def compute_steps(store: StudyStore, study_id: int, metric: str) -> int:
    """Training steps spent by all trials so far: the sum of each trial's highest reported step."""
    highest: dict[int, int] = {}
    for row in store.metrics(study_id, name=metric):
        highest[row["trial_number"]] = max(highest.get(row["trial_number"], 0), int(row["step"]))
    return sum(highest.values())


class HypervolumeRecorder:
    """Fixes the reference point once and appends the hypervolume after each COMPLETE trial."""

    def __init__(self, store: StudyStore, study_id: int, spec: Any, max_params: int) -> None:
        self.store = store
        self.study_id = study_id
        self.objectives = list(spec.objective_names)
        self.directions = list(spec.directions)
        self.given = dict(spec.search.reference_point or {})
        self.primary = spec.primary_metric
        self.max_params = max_params
        self.max_steps = int(spec.search.max_steps)
        self.task = str(spec.task.type)
        self._point: dict[str, float] | None = None

    def reference(self, trials: Sequence[Any]) -> dict[str, float] | None:
        """The stored reference point, or a new one derived from the first COMPLETE trial."""
        if self._point is not None:
            return self._point
        stored = self.store.events(self.study_id, kinds=[REFERENCE_EVENT])
        if stored:  # the first one wins, also when two drivers raced to write it
            self._point = {k: float(v) for k, v in stored[0]["detail"]["point"].items()}
            return self._point
        first = next(iter(complete_feasible(trials)), None)
        if first is None:
            return None
        first_values = dict(zip(self.objectives, first.values, strict=True))
        point = derive_reference(
            self.objectives,
            max_params=self.max_params,
            first_values=first_values,
            given=self.given,
            task=self.task,
        )
        if point is None:
            return None
        self.store.log_event(
            self.study_id,
            REFERENCE_EVENT,
            {"point": point, "from_trial": first.number, "given": sorted(self.given)},
        )
        stored = self.store.events(self.study_id, kinds=[REFERENCE_EVENT])
        self._point = {k: float(v) for k, v in stored[0]["detail"]["point"].items()}
        return self._point

    def value(self, trials: Sequence[Any]) -> tuple[float, int] | None:
        """(hypervolume, number of COMPLETE trials) of ``trials``, None before a reference exists."""
        point = self.reference(trials)
        if point is None:
            return None
        reference = to_min_form([point[n] for n in self.objectives], self.directions)
        front = front_trials(trials, self.directions, self.max_steps)
        volume = hypervolume([to_min_form(t.values, self.directions) for t in front], reference)
        from optuna.trial import TrialState  # noqa: PLC0415

        n_complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)
        return volume, n_complete

    def record(self, trials: Sequence[Any]) -> float | None:
        """Append one hypervolume row for the study as it is now; returns the value."""
        result = self.value(trials)
        if result is None:
            return None
        volume, n_complete = result
        steps = compute_steps(self.store, self.study_id, self.primary)
        self.store.record_hypervolume(self.study_id, n_complete, steps, volume)
        log.debug("hypervolume %.6g after %d complete trials (%d steps)", volume, n_complete, steps)
        return volume
