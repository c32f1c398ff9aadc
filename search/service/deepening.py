"""Iterative deepening: raise a study's top fidelity and continue its Pareto trials from checkpoints.

``paretune resume NAME --max-steps M`` (:func:`raise_max_steps`) stores ``M`` in the studies
table, the one source of the top fidelity: the spec keeps what was submitted (and its hash), and
:func:`with_max_steps` applies the table's value wherever the study is loaded, so the driver, the
rungs (``min_steps * eta^k`` up to ``M``) and the hypervolume use ``M``.

The driver then calls :func:`continue_front`: every feasible trial on the Pareto front of the
trials COMPLETE at the old top fidelity gets one continuation, a new trial with the same
parameters and user attributes ``continues`` (the parent's number) and ``resume_checkpoint`` (the
parent's ``checkpoint.pt``). The Ray trainable copies that file into the new trial's own
directory before training (:func:`paretune.search.service.trainable.seed_checkpoint`); the parent's files
are never written. Training goes on from the checkpoint's step to ``M`` on the learning-rate
schedule of ``M`` (the linear decay is stretched to the new end from the restored step on).

Continuations do not use up the budget of new trials: ``n_trials`` is raised by their number.
A COMPLETE trial below ``max_steps`` stays in the store but leaves the Pareto front
(:func:`paretune.search.algorithms.pareto.complete_feasible`).

Interrupted trials use the same carry-over: their retry gets ``resume_checkpoint`` pointing at the
interrupted trial's last checkpoint (:func:`resume_attrs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from paretune.search.algorithms.pareto import complete_feasible, front_trials, trial_steps
from paretune.search.service.trainable import CHECKPOINT_FILE, RESUME_KEY
from paretune.search.store.study_store import StudyInfo, StudyStore
from paretune.spaces import StudySpec
from paretune.spaces.errors import UserError

if TYPE_CHECKING:
    from paretune.search.service.context import StudyContext

log = logging.getLogger(__name__)

CONTINUES = "continues"  # user attribute: the number of the trial a continuation goes on from
RESUME_ATTR = "resume_checkpoint"  # user attribute: the checkpoint a trial starts from
DEEPENED = "deepened"  # event: max_steps raised
CONTINUATION = "continuation"  # event: one continuation queued


# -- the top fidelity ------------------------------------------------------------------------


def with_max_steps(spec: StudySpec, max_steps: int) -> StudySpec:
    """``spec`` with ``search.max_steps`` replaced (validated like a submitted spec)."""
    if spec.search.max_steps == max_steps:
        return spec
    data = spec.model_dump(mode="json")
    data["search"]["max_steps"] = int(max_steps)
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise UserError(f"--max-steps {max_steps}: {first['msg']}") from None


def check_max_steps(info: StudyInfo, spec: StudySpec, max_steps: int) -> StudySpec:
    """The spec at ``max_steps``, or a one-line error when it does not raise the top fidelity."""
    current = info.max_steps or spec.search.max_steps
    if max_steps <= current:
        raise UserError(
            f"--max-steps must be greater than the current max_steps of study {info.name!r} "
            f"({current}), got {max_steps}"
        )
    return with_max_steps(spec, max_steps)


def raise_max_steps(store: StudyStore, info: StudyInfo, spec: StudySpec, max_steps: int) -> None:
    """Store the new top fidelity (after :func:`check_max_steps`) and log a ``deepened`` event."""
    check_max_steps(info, spec, max_steps)
    store.update_study(info.name, max_steps=int(max_steps))
    store.log_event(info.id, DEEPENED, {"from": spec.search.max_steps, "to": int(max_steps)})


# -- continuations ---------------------------------------------------------------------------


def checkpoint_of(trial: Any) -> str | None:
    """Where a trial's last checkpoint is written (None before its directory is known)."""
    trial_dir = trial.user_attrs.get("trial_dir")
    return os.path.join(trial_dir, CHECKPOINT_FILE) if trial_dir else None


def old_top(trials: Sequence[Any], max_steps: int) -> int | None:
    """The highest fidelity below ``max_steps`` that COMPLETE trials reached (None: no such trial)."""
    steps = [
        s for t in complete_feasible(trials) if (s := trial_steps(t)) is not None and s < max_steps
    ]
    return max(steps) if steps else None


def continuation_candidates(
    trials: Sequence[Any], directions: Sequence[str], top: int
) -> list[Any]:
    """Feasible trials on the Pareto front of those COMPLETE at ``top`` steps, not yet continued."""
    at_top = [t for t in complete_feasible(trials) if trial_steps(t) == top]
    continued = {int(t.user_attrs[CONTINUES]) for t in trials if CONTINUES in t.user_attrs}
    return [t for t in front_trials(at_top, directions) if t.number not in continued]


def continue_front(ctx: StudyContext) -> list[int]:
    """Queue one continuation per Pareto trial of the old top fidelity; returns the parents.

    Idempotent (a parent with a continuation in any state is skipped) and a no-op unless the
    study was deepened. Call it only while no other driver runs the study.
    """
    store, study, spec = ctx.store, ctx.study, ctx.spec
    if not store.events(ctx.study_id, kinds=[DEEPENED]):
        return []
    max_steps = spec.search.max_steps
    trials = study.get_trials(deepcopy=False)
    top = old_top(trials, max_steps)
    parents = [] if top is None else continuation_candidates(trials, spec.directions, top)
    for parent in parents:
        ckpt = checkpoint_of(parent)
        found = ckpt is not None and os.path.exists(ckpt)
        attrs: dict[str, Any] = {
            CONTINUES: parent.number,
            "config_hash": parent.user_attrs.get("config_hash", ""),
        }
        if found:
            attrs[RESUME_ATTR] = ckpt
        study.enqueue_trial(dict(parent.params), user_attrs=attrs)
        child = _waiting_child(study, parent.number)
        detail = {
            "continues": parent.number,
            "from_step": top if found else 0,
            "to_step": max_steps,
        }
        detail["checkpoint"] = ckpt if found else None
        store.log_event(ctx.study_id, CONTINUATION, detail, trial_number=child)
        if not found:
            log.warning(
                "trial %s of %s has no checkpoint here (%s): its continuation trains from step 0",
                parent.number,
                ctx.name,
                ckpt,
            )
    settle_budget(ctx, study.get_trials(deepcopy=False))
    return [p.number for p in parents]


def settle_budget(ctx: StudyContext, trials: Sequence[Any]) -> int:
    """Raise ``n_trials`` by the continuations not yet paid for; returns the raise.

    Continuations do not use up the budget of new trials. What is owed is counted from the store
    (parents with a continuation, less the earlier ``budget_raised`` events for continuations), so
    a driver that died between queueing continuations and raising the budget is made good on the
    next resume, and a second call raises nothing."""
    store = ctx.store
    parents = {int(t.user_attrs[CONTINUES]) for t in trials if CONTINUES in t.user_attrs}
    paid = 0
    for event in store.events(ctx.study_id, kinds=["budget_raised"]):
        detail = event.get("detail") or {}
        if isinstance(detail, dict) and detail.get("why") == "continuations":
            paid += int(detail.get("to", 0)) - int(detail.get("from", 0))
    owed = len(parents) - paid
    if owed <= 0:
        return 0
    info = store.get_study(ctx.name)
    store.update_study(ctx.name, n_trials=info.n_trials + owed)
    store.log_event(
        ctx.study_id,
        "budget_raised",
        {"from": info.n_trials, "to": info.n_trials + owed, "why": "continuations"},
    )
    return owed


def _waiting_child(study: Any, parent: int) -> int | None:
    from optuna.trial import TrialState  # noqa: PLC0415

    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get(CONTINUES) == parent:
            return t.number
    return None


# -- hooks for the searcher ------------------------------------------------------------------


def resume_attrs(trial: Any) -> dict[str, Any]:
    """User attributes a retry of an interrupted ``trial`` carries: its own last checkpoint (when
    this machine sees it) or the one it started from, and its parent when it was a continuation."""
    out: dict[str, Any] = {}
    if CONTINUES in trial.user_attrs:
        out[CONTINUES] = trial.user_attrs[CONTINUES]
    own = checkpoint_of(trial)
    if own is not None and os.path.exists(own):
        out[RESUME_ATTR] = own
    elif trial.user_attrs.get(RESUME_ATTR):
        out[RESUME_ATTR] = trial.user_attrs[RESUME_ATTR]
    return out


def resume_config(trial: Any) -> dict[str, Any]:
    """The Ray config entry telling the trainable which checkpoint to start from (if any)."""
    path = trial.user_attrs.get(RESUME_ATTR)
    return {RESUME_KEY: str(path)} if path else {}
