"""Study life cycle: submit, resume, stop, delete. The CLI is a thin layer over these functions.

Storage URL precedence (``submit``): ``--storage``, then the file named by
``$PARETUNE_STORAGE_FILE`` (how a Ray Job gets it), then ``$PARETUNE_STORAGE``, then the spec's
``storage:`` field, then ``sqlite:///paretune.db``. The other commands have no spec: ``--storage``,
then ``$PARETUNE_STORAGE``, then the default.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretune.search.algorithms.samplers import make_sampler
from paretune.search.service.budget import count_budget
from paretune.search.service.context import StudyContext
from paretune.search.service.deepening import (
    check_max_steps,
    raise_max_steps,
    with_max_steps,
)
from paretune.search.service.driver import (
    STOP_REQUESTED,
    DriverOptions,
    RunOutcome,
    busy_error,
    driver_is_live,
    run_study,
)
from paretune.search.service.progress import ProgressState
from paretune.search.service.trainable import TrialFn
from paretune.search.store.study_store import StudyStore, UnknownStudyError, open_store
from paretune.search.store.urls import (
    ENV_STORAGE,
    StorageError,
    resolve_storage,
    storage_from_file,
)
from paretune.spaces import (
    LoadedSpec,
    ModelDims,
    StudySpec,
    check_against_model,
    dims_from_config,
    resolve_model,
)
from paretune.spaces.catalogue import OBJECTIVES
from paretune.spaces.errors import DataError, SpecError, UserError

log = logging.getLogger(__name__)


class StudyExistsError(UserError):
    """A study of that name is already in the store."""


def storage_url(cli: str | None = None, spec: StudySpec | None = None) -> str:
    """The storage URL to use (see the module docstring for the precedence)."""

    return resolve_storage(
        cli
        or storage_from_file()
        or os.environ.get(ENV_STORAGE)
        or (spec.storage if spec else None)
    )


def model_dims(spec: StudySpec) -> ModelDims:
    """The model's dimensions from its config alone (no weights, no torch).

    The classification head is sized with ``task.num_labels``, or the number of labels the task's
    data holds (read without torch), so ``trainable_params`` counted here equals the trainer's;
    2 when the data cannot be read here (a file moved after submit), with a warning.
    """
    source = resolve_model(
        spec.model.name,
        trust_remote_code=spec.model.trust_remote_code,
        revision=spec.model.revision,
    )
    return dims_from_config(source.config, task_num_labels(spec.task), spec.task.type)


def task_num_labels(task: Any) -> int:
    """``task.num_labels``, or the labels of its data (cached per data set and file version);
    0 for a causal LM (no classification head)."""
    if task.type == "causal_lm":
        return 0
    if task.num_labels:
        return int(task.num_labels)
    path = Path(task.dataset).expanduser()
    version = path.stat().st_mtime_ns if path.is_file() else None
    return _labels_of(task.model_dump_json(), version)


@functools.lru_cache(maxsize=32)
def _labels_of(task_json: str, version: int | None) -> int:
    from paretune.spaces.spec import TaskSpec  # noqa: PLC0415
    from paretune.trainers.data import load_dataset  # noqa: PLC0415 - reads files, no torch

    try:
        return len(load_dataset(TaskSpec.model_validate_json(task_json)).label_names)
    except DataError as e:
        log.warning("counting trainable parameters for 2 labels: %s", e)
        return 2


def check_spec(loaded: LoadedSpec) -> ModelDims:
    """Checks a spec needs beyond its schema: the model, the space on it, the reference point."""
    spec = loaded.spec
    dims = model_dims(spec)
    check_against_model(loaded, dims)
    for name in spec.search.reference_point or {}:
        if name not in spec.objective_names:
            allowed = ", ".join(spec.objective_names)
            raise loaded.error(
                ("search", "reference_point", name),
                f"{name!r} is not an objective of this study; allowed: {allowed}",
            )
    for name in spec.objective_names:
        if name not in OBJECTIVES:  # pragma: no cover - the schema refuses these already
            raise SpecError(f"unknown objective {name!r}")
    return dims


def optuna_study(store: StudyStore, spec: StudySpec, *, seed_offset: int = 0) -> Any:
    """Create or load the Optuna study of ``spec`` on the store's database.

    The sampler's seed is ``search.seed`` plus the number of trials the study already has, so a
    resumed study does not replay the first run's proposals.
    """
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(
        spec.search.sampler,
        seed=spec.search.seed + seed_offset,
        group=spec.space.combine is not None,
    )
    return optuna.create_study(
        study_name=spec.study,
        storage=store.optuna_storage(),
        directions=spec.directions,
        sampler=sampler,
        load_if_exists=True,
    )


def _optuna_names(store: StudyStore) -> set[str]:
    import optuna  # noqa: PLC0415

    return {
        s.study_name
        for s in optuna.get_all_study_summaries(store.optuna_storage(), include_best_trial=False)
    }


def stored_spec(store: StudyStore, name: str) -> StudySpec:
    """The spec a study was submitted with, at the top fidelity of the studies table.

    ``resume --max-steps`` raises ``max_steps`` in the table only (like ``--add-trials`` the
    budget), so the stored spec and its hash stay those that were submitted.
    """
    info = store.get_study(name)
    spec = StudySpec.model_validate_json(info.spec_json)
    if spec.spec_hash() != info.spec_hash:
        log.warning(
            "study %s: the stored spec hashes differently under this paretune version", name
        )
    if info.max_steps and info.max_steps != spec.search.max_steps:
        spec = with_max_steps(spec, info.max_steps)
    return spec


def open_context(store: StudyStore, name: str) -> StudyContext:
    """Everything the driver needs for a study that exists in the store."""
    info = store.get_study(name)
    spec = stored_spec(store, name)
    dims = model_dims(spec)
    import optuna  # noqa: PLC0415

    try:
        existing = len(
            optuna.load_study(study_name=name, storage=store.optuna_storage()).get_trials(
                deepcopy=False
            )
        )
    except KeyError:
        existing = 0
    study = optuna_study(store, spec, seed_offset=existing)
    return StudyContext(store=store, info=info, spec=spec, dims=dims, study=study)


# -- life cycle --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    ctx: StudyContext
    resumed: bool


def prepare_submit(
    store: StudyStore, loaded: LoadedSpec, *, resume_if_exists: bool = False
) -> Prepared:
    """Create the study (paretune row + Optuna study), or pick up the same spec when asked to."""
    spec = loaded.spec
    check_spec(loaded)
    existing = store.find_study(spec.study)
    if existing is not None:
        if existing.spec_hash != spec.spec_hash():
            raise StudyExistsError(
                f"study {spec.study!r} already exists in {store.masked_url} with a different spec; "
                f"use another study name, or `paretune delete {spec.study} --yes`"
            )
        if not resume_if_exists:
            raise StudyExistsError(
                f"study {spec.study!r} already exists with this spec; use `paretune resume {spec.study}` "
                "(or submit with --resume-if-exists)"
            )
        return Prepared(open_context(store, spec.study), resumed=True)
    if spec.study in _optuna_names(store):
        raise StudyExistsError(
            f"an Optuna study named {spec.study!r} that paretune did not create exists in {store.masked_url}; "
            "use another study name"
        )
    text = loaded.text or spec.canonical_json()
    try:
        store.create_study(
            spec.study,
            text,
            spec.canonical_json(),
            spec.spec_hash(),
            spec.search.n_trials,
            spec.search.max_steps,
        )
    except StorageError:  # the database failed (read-only, full, down): say so, not "exists"
        raise
    except UserError:  # another submit of the same name won the race
        raise StudyExistsError(
            f"study {spec.study!r} was created meanwhile; use `paretune resume {spec.study}`"
        ) from None
    ctx = open_context(store, spec.study)
    store.log_event(
        ctx.study_id, "submitted", {"spec_hash": spec.spec_hash(), "n_trials": spec.search.n_trials}
    )
    return Prepared(ctx, resumed=False)


def submit(
    loaded: LoadedSpec,
    *,
    storage: str | None = None,
    resume_if_exists: bool = False,
    trial_fn: TrialFn | str | None = None,
    options: DriverOptions | None = None,
    progress: ProgressState | None = None,
) -> RunOutcome:
    """Create a study from a spec and run it in this process until its budget is spent."""
    store = open_store(storage_url(storage, loaded.spec))
    try:
        prepared = prepare_submit(store, loaded, resume_if_exists=resume_if_exists)
        if prepared.resumed:
            store.log_event(
                prepared.ctx.study_id, "resume_requested", {"via": "submit --resume-if-exists"}
            )
        return run_study(prepared.ctx, trial_fn=trial_fn, options=options, progress=progress)
    finally:
        store.dispose()


def add_trials(store: StudyStore, name: str, n: int) -> int:
    """Raise a study's budget by ``n`` trials; returns the new budget."""
    if n < 0:
        raise UserError(f"--add-trials must be >= 0, got {n}")
    info = store.get_study(name)
    if n:
        store.update_study(name, n_trials=info.n_trials + n)
        store.log_event(info.id, "budget_raised", {"from": info.n_trials, "to": info.n_trials + n})
    return info.n_trials + n


def resume(
    name: str,
    *,
    storage: str | None = None,
    add: int = 0,
    max_steps: int | None = None,
    trial_fn: TrialFn | str | None = None,
    options: DriverOptions | None = None,
    progress: ProgressState | None = None,
) -> RunOutcome:
    """Run a stored study on: end what a dead driver left, queue retries, spend the rest of the budget.

    ``max_steps`` raises the top fidelity first; the trials on the front at the old one continue
    from their checkpoints (:mod:`paretune.search.service.deepening`).
    """
    store = open_store(storage_url(storage), create=False)
    try:
        info = store.get_study(name)
        options = options or DriverOptions()
        if not options.join and driver_is_live(info, options.stale_after_s):
            raise busy_error(info, options.stale_after_s)  # before touching the budget
        if max_steps is not None:  # checked before anything changes
            if driver_is_live(info, options.stale_after_s):
                raise UserError(
                    f"study {name!r} is running on {info.driver_host}; --max-steps needs it "
                    f"stopped (`paretune stop {name}`)"
                )
            spec = stored_spec(store, name)
            check_max_steps(info, spec, max_steps)
        if add < 0:
            raise UserError(f"--add-trials must be >= 0, got {add}")
        if max_steps is not None:
            raise_max_steps(store, info, spec, max_steps)
        add_trials(store, name, add)
        ctx = open_context(store, name)
        store.log_event(
            ctx.study_id,
            "resume_requested",
            {"add_trials": add, "join": options.join, "max_steps": max_steps},
        )
        return run_study(ctx, trial_fn=trial_fn, options=options, progress=progress)
    finally:
        store.dispose()


def request_stop(name: str, *, storage: str | None = None) -> str:
    """Ask the driver running ``name`` to stop cleanly (its running trials are queued again)."""
    store = open_store(storage_url(storage), create=False)
    try:
        info = store.get_study(name)
        if not driver_is_live(info):
            raise UserError(
                f"study {name!r} is not running (status {info.status}); nothing to stop"
            )
        store.set_status(name, STOP_REQUESTED)
        store.log_event(info.id, "stop_requested", {})
        return f"asked the driver on {info.driver_host} to stop study {name!r}"
    finally:
        store.dispose()


def delete(name: str, *, storage: str | None = None, yes: bool = False) -> str:
    """Delete a study (paretune rows and the Optuna study). Refuses without ``yes`` or while it runs."""
    if not yes:
        raise UserError(f"deleting study {name!r} removes all its trials; add --yes to confirm")
    store = open_store(storage_url(storage), create=False)
    try:
        info = store.get_study(name)
        if driver_is_live(info):
            raise UserError(
                f"study {name!r} is running on {info.driver_host}; `paretune stop {name}` first"
            )
        store.delete_study(name)
        return f"deleted study {name!r} from {store.masked_url}"
    finally:
        store.dispose()


def budget_of(store: StudyStore, name: str) -> Any:
    """The budget of a stored study (see :mod:`paretune.search.service.searcher` for the rules)."""
    import optuna  # noqa: PLC0415

    info = store.get_study(name)
    try:
        trials = optuna.load_study(study_name=name, storage=store.optuna_storage()).get_trials(
            deepcopy=False
        )
    except KeyError:
        trials = []
    return count_budget(trials, info.n_trials)


__all__ = [
    "Prepared",
    "StudyExistsError",
    "UnknownStudyError",
    "add_trials",
    "budget_of",
    "check_spec",
    "delete",
    "model_dims",
    "open_context",
    "optuna_study",
    "prepare_submit",
    "request_stop",
    "resume",
    "stored_spec",
    "storage_url",
    "submit",
]
