"""After an interruption: end the trials a dead driver left RUNNING, and queue retries.

Also the Optuna side effects the searcher and resume share (a learning curve as intermediate
values, an interrupted trial told FAIL).
"""

from __future__ import annotations

from typing import Any

from paretune.search.algorithms.fidelity import record_violations
from paretune.search.algorithms.hypervolume import HypervolumeRecorder
from paretune.search.service.budget import requeued_numbers
from paretune.search.service.context import StudyContext
from paretune.search.service.deepening import resume_attrs
from paretune.search.service.trial_results import constraint_violations
from paretune.search.store.study_store import StudyStore
from paretune.spaces import describe_space


def write_curve(study: Any, trial_id: int, curve: dict[int, float]) -> None:
    """The primary metric's learning curve as Optuna intermediate values (before the trial ends).

    ``Trial.report`` raises for multi-objective studies; the storage call does not.
    """
    for step, value in sorted(curve.items()):
        study._storage.set_trial_intermediate_value(trial_id, step, value)


def pruned_curves_allowed(study: Any) -> bool:
    """False where intermediate values on a PRUNED trial would break the sampler (multi-objective TPE)."""
    import optuna  # noqa: PLC0415

    return len(study.directions) == 1 or not isinstance(study.sampler, optuna.samplers.TPESampler)


def mark_interrupted(
    study: Any,
    trial_id: int,
    number: int,
    store: StudyStore,
    study_id: int,
    reason: str,
    step: int | None = None,
) -> None:
    """FAIL a RUNNING trial with user attribute ``interrupted`` and an ``interrupted`` event."""
    from optuna.trial import TrialState  # noqa: PLC0415

    study._storage.set_trial_user_attr(trial_id, "interrupted", reason)
    if step is not None:
        study._storage.set_trial_user_attr(trial_id, "steps", step)
    study.tell(number, state=TrialState.FAIL)
    store.log_event(study_id, "interrupted", {"reason": reason, "step": step}, trial_number=number)


def retry_key(trial: Any) -> str:
    """What ``max_retries`` counts retries of: the configuration, and for a continuation
    (``resume --max-steps``) also its parent, so a continuation has retries of its own."""
    key = str(trial.user_attrs.get("config_hash", ""))
    parent = trial.user_attrs.get("continues")
    return key if parent is None else f"{key}@continues:{parent}"


def given_params(trial: Any) -> dict[str, Any]:
    """The parameters a trial was handed: those it sampled, completed by those enqueued for it.

    A driver killed between ``study.ask()`` and the last ``suggest_*`` call leaves a trial whose
    ``params`` hold only what was sampled so far (none, or a few); the configuration the rung
    model chose for it is whole in Optuna's ``fixed_params`` system attribute. A retry built
    from ``params`` alone would draw the rest afresh: another configuration under its name.
    """
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def requeue_interrupted(
    study: Any, store: StudyStore, study_id: int, max_retries: int
) -> list[int]:
    """Queue again, with the same parameters, every interrupted trial that has no retry yet.

    A configuration (config hash) is retried at most ``max_retries`` times; past that its last
    interrupted trial stays FAIL and counts against the budget. A retry starts from the
    interrupted trial's last checkpoint (:func:`paretune.search.service.deepening.resume_attrs`).
    Returns the requeued numbers.
    """
    from optuna.trial import TrialState  # noqa: PLC0415

    trials = study.get_trials(deepcopy=False)
    replaced = requeued_numbers(trials)
    retries: dict[str, int] = {}
    for t in trials:
        if "retry_of" in t.user_attrs:
            key = retry_key(t)
            retries[key] = retries.get(key, 0) + 1
    limited = {e["trial_number"] for e in store.events(study_id, kinds=["retry_limit"])}
    out = []
    for t in trials:
        if (
            t.state != TrialState.FAIL
            or not t.user_attrs.get("interrupted")
            or t.number in replaced
        ):
            continue
        key = retry_key(t)
        done = retries.get(key, 0)
        if done >= max_retries:
            if t.number not in limited:
                store.log_event(
                    study_id, "retry_limit", {"retries": done, "max_retries": max_retries}, t.number
                )
            continue
        attrs = {
            "retry_of": t.number,
            "config_hash": t.user_attrs.get("config_hash", ""),
            **resume_attrs(t),
        }
        study.enqueue_trial(given_params(t), user_attrs=attrs)  # from its last checkpoint
        retries[key] = done + 1
        store.log_event(
            study_id, "requeued", {"retry": done + 1, "max_retries": max_retries}, t.number
        )
        out.append(t.number)
    return out


def recover_orphans(ctx: StudyContext, reason: str = "driver died") -> dict[str, list[int]]:
    """After a driver died: end the trials it left RUNNING, then queue retries.

    A trial whose metrics reached ``max_steps`` before the driver died is completed from the
    stored values rather than trained again; every other orphan becomes FAIL ("interrupted").
    Call this only while no live driver runs the study.
    """
    from optuna.trial import TrialState  # noqa: PLC0415

    spec, study, store = ctx.spec, ctx.study, ctx.store
    completed, interrupted = [], []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rows = store.metrics(ctx.study_id, trial_number=t.number)
        steps = [r["step"] for r in rows]
        last = max(steps) if steps else 0
        final = {r["name"]: r["value"] for r in rows if r["step"] == last}
        if "trainable_params" in t.user_attrs:
            final.setdefault("trainable_params", float(t.user_attrs["trainable_params"]))
        primary = spec.primary_metric
        write_curve(
            study, t._trial_id, {r["step"]: r["value"] for r in rows if r["name"] == primary}
        )
        if last >= spec.search.max_steps and all(n in final for n in spec.objective_names):
            violations = constraint_violations(spec, final)
            if violations is not None:
                record_violations(study._storage, t._trial_id, violations)
            study._storage.set_trial_user_attr(t._trial_id, "steps", last)
            study._storage.set_trial_user_attr(t._trial_id, "recovered", True)
            study.tell(t.number, [final[n] for n in spec.objective_names])
            store.log_event(ctx.study_id, "recovered", {"step": last}, trial_number=t.number)
            completed.append(t.number)
        else:
            mark_interrupted(study, t._trial_id, t.number, store, ctx.study_id, reason, last)
            interrupted.append(t.number)
    requeued = requeue_interrupted(study, store, ctx.study_id, spec.search.max_retries)
    if completed:
        max_params = describe_space(spec, ctx.dims).max_params
        HypervolumeRecorder(store, ctx.study_id, spec, max_params).record(
            study.get_trials(deepcopy=False)
        )
    return {"completed": completed, "interrupted": interrupted, "requeued": requeued}
