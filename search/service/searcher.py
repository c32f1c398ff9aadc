"""paretune's searcher: Optuna proposes, the store records, and every trial ends in the right state.

:class:`SearchCore` holds the logic and needs no Ray, so tests drive it by calling its methods;
the thin ``ray.tune.search.Searcher`` that maps Ray trial ids onto it is in
:mod:`paretune.search.service.ray_searcher`.

Trial life cycle (Optuna states):

- ask: an enqueued retry first; otherwise the rung model of ``search.sampler_fidelity``
  (:class:`~paretune.search.algorithms.fidelity.FidelityAwareAsker`, rebuilt from the store on start)
  proposes a configuration and enqueues it; ``spaces`` samples it into a plan. A plan over
  ``constraints.max_trainable_params`` is never trained: it is told FAIL with user attribute
  ``rejected`` and an event ``rejected``, and the next one is asked.
- every reported result: its metrics go to the store at their step, at once. The primary metric
  becomes an Optuna intermediate value when the trial ends (Optuna refuses them after that), for
  every trial except a PRUNED one of a multi-objective study under TPE: Optuna's TPE ranks pruned
  trials by their last intermediate value with ``study.direction``, which raises on a
  multi-objective study. Those learning curves are in ``paretune_metrics`` only.
- end: COMPLETE when the trial reached ``search.max_steps`` (values in the spec's objective order);
  PRUNED when it stopped earlier (a scheduler, a timeout, a peak memory above
  ``constraints.max_peak_memory_mb``: infeasible, never on the front); FAIL when it raised (user attribute and
  event ``trial_failed`` keep the traceback); FAIL with ``interrupted`` when the driver stops under
  it, then queued again with the same parameters while its configuration has retries left.

The budget's rules are in :mod:`paretune.search.service.budget`; ending the trials a dead driver left
and queueing retries in :mod:`paretune.search.service.requeue`; the Ray Tune ``Searcher`` and callback
in :mod:`paretune.search.service.ray_searcher`.
"""

from __future__ import annotations

import functools
import logging
import math
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from paretune.search.algorithms.fidelity import (
    N_STARTUP_TRIALS,
    FidelityAwareAsker,
    History,
    record_violations,
)
from paretune.search.algorithms.hypervolume import HypervolumeRecorder
from paretune.search.algorithms.pareto import front_trials
from paretune.search.service.ask_lock import ask_lock
from paretune.search.service.budget import Budget, count_budget, trailing_rejections
from paretune.search.service.context import StudyContext
from paretune.search.service.deepening import resume_config
from paretune.search.service.progress import ProgressState
from paretune.search.service.requeue import (
    mark_interrupted,
    pruned_curves_allowed,
    requeue_interrupted,
    write_curve,
)
from paretune.search.service.shared_results import SharedResults
from paretune.search.service.trainable import (
    ERROR_KEY,
    MEMORY_KEY,
    NODE_KEY,
    STEP_KEY,
    TIMEOUT_KEY,
    TRIAL_DIR_KEY,
    TRIAL_KEY,
)
from paretune.search.service.trial_results import (
    constraint_violations,
    failure_reason,
    is_number,
    reported_keys,
    rung_history,
    with_trainable_params,
)
from paretune.search.store.urls import StorageError
from paretune.spaces import (
    count_trainable,
    describe_space,
    sample_config,
    startup_params,
)

log = logging.getLogger(__name__)

FINISHED = "FINISHED"  # the same string as ray.tune.search.Searcher.FINISHED


def _store_failure_is_fatal(method: Any) -> Any:
    """Remember a store error that outlasted its retries: Ray Tune wraps what its searcher raises
    in a ``TuneError``; the driver re-raises this one instead (one line, exit status 2)."""

    @functools.wraps(method)
    def wrapper(self: SearchCore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StorageError as e:
            if self.fatal is None:
                self.fatal = e
            raise

    return wrapper


@dataclass
class LiveTrial:
    number: int
    trial_id: int
    config_hash: str
    trainable_params: int
    last_step: int = 0
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    over_memory: bool = False  # stopped above constraints.max_peak_memory_mb
    seen: bool = False
    ray_error: bool = False  # Ray reported an error; its text follows through on_ray_error
    trial_dir: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # what the fidelity models learn from
    distributions: dict[str, Any] = field(default_factory=dict)


class SearchCore:
    """Asks, records and ends trials of one study; all state worth keeping goes to the store."""

    def __init__(
        self, ctx: StudyContext, *, driver_id: str = "", progress: ProgressState | None = None
    ) -> None:
        self.ctx = ctx
        self.spec = ctx.spec
        self.store = ctx.store
        self.study = ctx.study
        self.driver_id = driver_id or socket.gethostname()
        self.progress = progress
        self.live: dict[int, LiveTrial] = {}
        self.max_steps = ctx.spec.search.max_steps
        self.max_params = describe_space(ctx.spec, ctx.dims).max_params
        self.hv = HypervolumeRecorder(ctx.store, ctx.study_id, ctx.spec, self.max_params)
        self.stopping: str | None = None  # set by the driver: "interrupted" | "stopped"
        self.gave_up: str | None = None  # why the study cannot go on (too many rejections)
        self.finished = False
        self.fatal: Exception | None = None  # the store failed for good: the driver stops with it
        self._lock = threading.RLock()
        trials = self.trials()
        self._rejections = trailing_rejections(trials)
        start_id = ctx.store.max_metric_id(ctx.study_id)  # before the history: overlap, no gap
        # the stored results, read once: the rung models here, the scheduler's rungs in the driver
        self.start_history: History | None = rung_history(ctx.store, ctx.study_id)
        self.asker = self._make_asker(trials, self.start_history)
        # what other drivers of the study store from now on (``resume --join``)
        self.shared = SharedResults(ctx.store, ctx.study_id, start_id)
        self.shared.subscribe(self._learn_shared)
        self._shared_trials: dict[int, Any] = {}
        self._refresh_progress(trials)

    # -- reading ----------------------------------------------------------------------------

    def trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def budget(self, trials: Sequence[Any] | None = None) -> Budget:
        info = self.store.get_study(self.ctx.name)  # n_trials may have been raised meanwhile
        return count_budget(self.trials() if trials is None else trials, info.n_trials)

    # -- ask --------------------------------------------------------------------------------

    def _make_asker(self, trials: Sequence[Any], stored: History) -> FidelityAwareAsker:
        """The rung models of ``search.sampler_fidelity``, refilled from every stored result."""
        measured = constraint_violations(self.spec, {}) is not None  # as the study's sampler
        asker = FidelityAwareAsker.from_spec(
            self.spec,
            constraints=functools.partial(constraint_violations, self.spec) if measured else None,
            known=lambda config: float(count_trainable(config.plan, self.ctx.dims)),
            startup=startup_params(self.spec, self.ctx.dims, N_STARTUP_TRIALS),
        )
        asker.rebuild(with_trainable_params(stored, trials), trials)
        return asker

    def _sample(self, trial: Any) -> Any:
        return sample_config(trial, self.spec, self.ctx.dims)

    def _learn_shared(self, results: Sequence[tuple[int, int, dict[str, float]]]) -> None:
        """Other drivers' results teach the rung models, as this driver's own do."""
        with self._lock:
            storage = self.study._storage
            for number in {n for n, _, _ in results} - set(self._shared_trials):
                trial_id = storage.get_trial_id_from_study_id_trial_number(
                    self.study._study_id, number
                )
                self._shared_trials[number] = storage.get_trial(trial_id)
            trials = [self._shared_trials[n] for n in {n for n, _, _ in results}]
            self.asker.record_results(with_trainable_params(results, trials), trials)

    @_store_failure_is_fatal
    def next_trial(self) -> dict[str, Any] | str | None:
        """A Ray config for the next trial, or FINISHED when the budget is spent or the study gave up.

        The budget check and the ask hold the study's ask lock: drivers sharing a study never
        overshoot the budget (:mod:`paretune.search.service.ask_lock`)."""
        with self._lock, ask_lock(self.store, self.ctx.study_id):
            if self.stopping or self.gave_up or self.finished:
                return FINISHED
            self.shared.poll(force=True)  # other drivers' results, before the models are asked
            limit = self.spec.search.constraints.max_trainable_params
            while True:
                if not self.budget().can_ask:
                    self.finished = True
                    return FINISHED
                trial = self.asker.ask(self.study, self._sample)  # a retry, or a rung model's pick
                try:
                    config = self._sample(trial)  # the enqueued parameters: the model's config
                except Exception:  # do not leave a RUNNING trial behind for resume to retry
                    self._fail_unsampled(trial)
                    raise
                n_params = count_trainable(config.plan, self.ctx.dims)
                config_hash = trial.user_attrs.get("config_hash") or config.hash()
                attrs = {
                    "plan": config.plan.to_dict(),
                    "summary": config.plan.summary(),
                    "hparams": config.hparams.to_dict(),
                    "trainable_params": n_params,
                    "config_hash": config_hash,
                }
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
                if limit is not None and n_params > limit:
                    if self._reject(trial, n_params, limit):
                        return FINISHED
                    continue
                self._rejections = 0
                self.shared.own(trial.number)
                self.live[trial.number] = LiveTrial(
                    trial.number,
                    trial._trial_id,
                    config_hash,
                    n_params,
                    params=dict(trial.params),
                    distributions=dict(trial.distributions),
                )
                self._refresh_progress()
                return {
                    TRIAL_KEY: trial.number,
                    "config": config.to_dict(),
                    "trainable_params": n_params,
                    "config_hash": config_hash,
                    **resume_config(trial),  # a continuation or retry starts from a checkpoint
                }

    def _fail_unsampled(self, trial: Any) -> None:
        import traceback  # noqa: PLC0415

        from optuna.trial import TrialState  # noqa: PLC0415

        tb = traceback.format_exc()
        trial.set_user_attr("traceback", tb)
        self.asker.finish(trial.number)
        self.study.tell(trial, state=TrialState.FAIL)
        self.store.log_event(
            self.ctx.study_id,
            "trial_failed",
            {"traceback": tb, "step": 0},
            trial_number=trial.number,
        )

    def _reject(self, trial: Any, n_params: int, limit: int) -> bool:
        """Refuse an over-budget plan; True when the study must give up."""
        from optuna.trial import TrialState  # noqa: PLC0415

        trial.set_user_attr("rejected", True)
        self.asker.finish(trial.number)
        self.study.tell(trial, state=TrialState.FAIL)
        self.store.log_event(
            self.ctx.study_id,
            "rejected",
            {"trainable_params": n_params, "max_trainable_params": limit},
            trial_number=trial.number,
        )
        self._rejections += 1
        cap = self.spec.search.constraints.max_rejections
        if self._rejections >= cap:
            self.gave_up = (
                f"{self._rejections} plans in a row exceeded max_trainable_params={limit:,}; the space "
                f"allows up to {self.max_params:,}: raise search.constraints.max_trainable_params "
                "or narrow the space"
            )
            self.store.log_event(self.ctx.study_id, "gave_up", {"reason": self.gave_up})
            log.warning("study %s gives up: %s", self.ctx.name, self.gave_up)
            return True
        return False

    # -- results ----------------------------------------------------------------------------

    @_store_failure_is_fatal
    def on_result(self, number: int, result: dict[str, Any]) -> None:
        """Record one reported result (metrics at their step); repeated steps are ignored."""
        with self._lock:
            live = self.live.get(number)
            if live is None:
                log.debug("result for trial %s that this driver does not run", number)
                return
            if result.get(ERROR_KEY):
                live.error = str(result[ERROR_KEY])
            if result.get(TIMEOUT_KEY):
                live.timed_out = True
            if result.get(MEMORY_KEY):
                live.over_memory = True
            if not live.seen and (result.get("hostname") or result.get("node_ip")):
                live.seen = True
                self.store.log_event(
                    self.ctx.study_id,
                    "trial_running",
                    {
                        "host": result.get("hostname"),
                        "node_ip": result.get("node_ip"),
                        "node_id": result.get(NODE_KEY),
                        "pid": result.get("pid"),
                    },
                    trial_number=number,
                )
            trial_dir = result.get(TRIAL_DIR_KEY)
            if trial_dir and not live.trial_dir:  # where the checkpoints and the adapter go
                live.trial_dir = str(trial_dir)
                self.study._storage.set_trial_user_attr(live.trial_id, "trial_dir", live.trial_dir)
            if STEP_KEY not in result or live.error:
                return
            step = int(result[STEP_KEY])
            metrics = {
                k: float(result[k])
                for k in reported_keys(result)
                if isinstance(result.get(k), int | float) and math.isfinite(float(result[k]))
            }
            bad = [
                k for k in reported_keys(result) if k not in metrics and is_number(result.get(k))
            ]
            if bad:  # NaN or infinity: the trial fails (the trainable stops it at once too)
                live.error = (
                    f"FloatingPointError: metric {bad[0]} is {result[bad[0]]} at step {step}"
                )
                return
            if step <= live.last_step or not metrics:
                return
            self.store.record_metrics(self.ctx.study_id, number, step, metrics)
            live.last_step = step
            live.metrics[step] = metrics
            self._observe(live, step, metrics)

    def _observe(self, live: LiveTrial, step: int, metrics: dict[str, float]) -> None:
        """A result at a rung teaches that rung's model (``search.sampler_fidelity``)."""
        if not live.params:  # a live trial this core did not ask: read its parameters once
            frozen = self.study._storage.get_trial(live.trial_id)
            live.params, live.distributions = dict(frozen.params), dict(frozen.distributions)
        values = {"trainable_params": float(live.trainable_params), **metrics}
        self.asker.observe(live, step, values)

    @_store_failure_is_fatal
    def on_end(
        self, number: int, result: dict[str, Any] | None = None, error: bool = False
    ) -> str | None:
        """End a trial: COMPLETE, PRUNED or FAIL (see the module docstring). Returns the state name."""
        with self._lock:
            if number not in self.live:
                return None
            if result:
                self.on_result(number, result)
            live = self.live[number]
            if live.error or error:
                state = self._fail(
                    live, live.error or "the Ray trial failed (worker died or was killed)"
                )
            elif live.timed_out and live.last_step < self.max_steps:
                state = self._fail(
                    live,
                    f"timeout: trial_timeout_s={self.spec.search.trial_timeout_s} exceeded "
                    f"at step {live.last_step}",
                )
            elif self.stopping and live.last_step < self.max_steps:
                state = self._interrupt(live, self.stopping)
            elif live.last_step >= self.max_steps:
                state = self._complete(live)
            elif not live.metrics and self.stopping is None:
                # ended before its first evaluation without an error: nothing trained, run it again
                state = self._interrupt(live, "ended before reporting")
            else:
                state = self._prune(live)
            self._refresh_progress()
            return state

    def mark_ray_error(self, number: int) -> bool:
        """Ray says the trial errored. True: it ended now (its traceback was reported already);
        False: it waits for :meth:`on_ray_error` to bring Ray's error text."""
        with self._lock:
            live = self.live.get(number)
            if live is None:
                return True
            if live.error:
                self.on_end(number, None, error=True)
                return True
            live.ray_error = True
            return False

    @_store_failure_is_fatal
    def on_ray_error(self, number: int, message: str | None) -> None:
        """End a trial that Ray saw fail (a worker died, was killed, ran out of memory)."""
        with self._lock:
            live = self.live.get(number)
            if live is None:
                return
            live.error = live.error or message or "the Ray trial failed (worker died or was killed)"
            self.on_end(number, None, error=True)

    def flush_ray_errors(self) -> None:
        """End trials still waiting for Ray's error text (the run is ending)."""
        with self._lock:
            for number in [n for n, t in self.live.items() if t.ray_error]:
                self.on_ray_error(number, None)

    def _pop(self, live: LiveTrial) -> None:
        self.live.pop(live.number, None)
        self.asker.finish(live.number)

    def _curve(self, live: LiveTrial) -> dict[int, float]:
        primary = self.spec.primary_metric
        return {step: m[primary] for step, m in live.metrics.items() if primary in m}

    def _complete(self, live: LiveTrial) -> str:
        from optuna.trial import TrialState  # noqa: PLC0415

        final = dict(live.metrics[live.last_step])
        final.setdefault("trainable_params", float(live.trainable_params))
        missing = [n for n in self.spec.objective_names if n not in final]
        if missing:
            return self._fail(
                live,
                f"the trial reached step {live.last_step} without reporting {', '.join(missing)}",
            )
        values = [final[n] for n in self.spec.objective_names]
        violations = constraint_violations(self.spec, final)
        sid = self.study._storage
        if violations is not None:
            record_violations(sid, live.trial_id, violations)
        sid.set_trial_user_attr(live.trial_id, "steps", live.last_step)
        write_curve(self.study, live.trial_id, self._curve(live))
        self._pop(live)
        self.study.tell(live.number, values)
        self._after_complete()
        return TrialState.COMPLETE.name

    def _after_complete(self) -> None:
        trials = self.trials()
        try:
            value = self.hv.record(trials)
        except Exception:  # the front is a by-product; never lose the run over it
            log.exception("hypervolume of study %s could not be recorded", self.ctx.name)
            value = None
        self._refresh_progress(trials, hypervolume=value)

    def _prune(self, live: LiveTrial) -> str:
        from optuna.trial import TrialState  # noqa: PLC0415

        sid = self.study._storage
        sid.set_trial_user_attr(live.trial_id, "steps", live.last_step)
        if live.metrics:
            violations = constraint_violations(self.spec, live.metrics[live.last_step])
            if violations is not None:
                record_violations(sid, live.trial_id, violations)
        detail: dict[str, Any] = {"step": live.last_step}
        if live.timed_out:
            detail["reason"] = f"trial_timeout_s={self.spec.search.trial_timeout_s}"
        elif live.over_memory:
            limit = self.spec.search.constraints.max_peak_memory_mb
            peak = live.metrics.get(live.last_step, {}).get("peak_memory_mb", float("nan"))
            detail.update(reason=f"max_peak_memory_mb={limit:g}", peak_memory_mb=peak)
            sid.set_trial_user_attr(
                live.trial_id, "stopped", f"peak_memory_mb {peak:.0f} > {limit:g}"
            )
        if pruned_curves_allowed(self.study):
            write_curve(self.study, live.trial_id, self._curve(live))
        self._pop(live)
        self.study.tell(live.number, state=TrialState.PRUNED)
        self.store.log_event(self.ctx.study_id, "trial_pruned", detail, trial_number=live.number)
        return TrialState.PRUNED.name

    def _fail(self, live: LiveTrial, tb: str) -> str:
        from optuna.trial import TrialState  # noqa: PLC0415

        reason = "timeout" if live.timed_out else failure_reason(tb)
        sid = self.study._storage
        sid.set_trial_user_attr(live.trial_id, "traceback", tb)
        sid.set_trial_user_attr(live.trial_id, "fail_reason", reason)
        sid.set_trial_user_attr(live.trial_id, "steps", live.last_step)
        write_curve(self.study, live.trial_id, self._curve(live))
        self._pop(live)
        self.study.tell(live.number, state=TrialState.FAIL)
        self.store.log_event(
            self.ctx.study_id,
            "trial_failed",
            {"traceback": tb, "step": live.last_step, "reason": reason},
            trial_number=live.number,
        )
        log.warning(
            "trial %s of %s failed (%s): %s",
            live.number,
            self.ctx.name,
            reason,
            tb.strip().splitlines()[-1:],
        )
        return TrialState.FAIL.name

    def _interrupt(self, live: LiveTrial, reason: str) -> str:
        self._pop(live)
        write_curve(self.study, live.trial_id, self._curve(live))
        mark_interrupted(
            self.study,
            live.trial_id,
            live.number,
            self.store,
            self.ctx.study_id,
            reason,
            live.last_step,
        )
        requeue_interrupted(self.study, self.store, self.ctx.study_id, self.spec.search.max_retries)
        return "FAIL"

    def interrupt_live(self, reason: str) -> list[int]:
        """Mark every trial this driver still runs FAIL ("interrupted") and queue retries."""
        with self._lock:
            numbers = sorted(self.live)
            for number in numbers:
                self._interrupt(self.live[number], reason)
            if numbers:
                self._refresh_progress()
            return numbers

    # -- progress ---------------------------------------------------------------------------

    def _refresh_progress(
        self, trials: Sequence[Any] | None = None, hypervolume: float | None = None
    ) -> None:
        if self.progress is None:
            return
        trials = self.trials() if trials is None else trials
        budget = self.budget(trials)
        front = front_trials(trials, self.spec.directions, self.max_steps)
        if hypervolume is None:
            history = self.store.hypervolume_history(self.ctx.study_id)
            hypervolume = history[-1]["value"] if history else None
        self.progress.refresh(
            trials,
            budget=budget.n_trials,
            used=budget.used,
            objectives=self.spec.objective_names,
            directions=self.spec.directions,
            pareto_size=len(front),
            hypervolume=hypervolume,
        )
