"""Study commands: submit, resume, status, pareto, studies, stop, delete.

Every command takes ``--storage`` (else ``$PARETUNE_STORAGE``, else ``sqlite:///paretune.db``).
Mistakes raise :class:`~paretune.spaces.errors.UserError`; ``paretune``'s ``main`` prints them as
one line and exits with status 2. A study interrupted with Ctrl-C exits with status 130.
Tables and progress go to the terminal through rich; ``--format json|csv`` writes plain text on
stdout for scripts. Nothing here imports Ray or torch until a study actually runs.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from paretune.spaces.errors import UserError

from .trainable import TrialFn

# The trial function submit/resume run; None means paretune.trainers.train_trial. Tests swap in
# a fake trainer here (a callable, or a "module:function" path importable by the Ray workers).
TRIAL_FN: TrialFn | str | None = None

STORAGE_HELP = "Study store URL: sqlite:///PATH.db or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB (default: $PARETUNE_STORAGE, else sqlite:///paretune.db)."


def _storage_opt() -> Any:
    return typer.Option(None, "--storage", help=STORAGE_HELP, show_default=False)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _check_format(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"unknown format {value!r}; allowed: {', '.join(allowed)}")
    return value


def _run_outcome(outcome: Any, name: str, storage: str | None) -> None:
    """Print how the run ended and the front; exit 130 when it was interrupted."""
    from . import report  # noqa: PLC0415
    from .service import storage_url  # noqa: PLC0415
    from .store import open_store  # noqa: PLC0415

    console = _err()
    style = {"done": "green", "interrupted": "yellow", "stopped": "yellow"}.get(
        outcome.status, "red"
    )
    console.print(f"[{style}]{name}: {outcome.status}[/] - {outcome.message}")
    if outcome.status in ("done", "stopped", "interrupted", "gave-up", "incomplete"):
        store = open_store(storage_url(storage), create=False)
        try:
            rows = report.pareto_rows(store, name)
            if rows:
                _out().print(report.pareto_table(name, rows, report.objectives_of(store, name)))
        finally:
            store.dispose()
    if outcome.interrupted:
        raise typer.Exit(130)
    if outcome.status in ("gave-up", "failed"):
        raise typer.Exit(1)


def submit(
    spec_path: str = typer.Argument(..., metavar="SPEC", help="The study spec (YAML)."),
    storage: str | None = _storage_opt(),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address to run on (default: Ray on this machine)."
    ),
    resume_if_exists: bool = typer.Option(
        False,
        "--resume-if-exists",
        help="Resume a study of the same name and spec instead of refusing.",
    ),
) -> None:
    """Create a study from SPEC and run it here, with live progress (Ctrl-C stops cleanly)."""
    from paretune.spaces import load_spec  # noqa: PLC0415

    from . import service  # noqa: PLC0415
    from .driver import DriverOptions  # noqa: PLC0415
    from .progress import ProgressState, live_progress  # noqa: PLC0415

    loaded = load_spec(spec_path)
    url = service.storage_url(storage, loaded.spec)
    state = ProgressState(loaded.spec.study)
    _err().print(f"study [bold]{loaded.spec.study}[/] in {_masked(url)}")
    with live_progress(state, _err()):
        outcome = service.submit(
            loaded,
            storage=url,
            resume_if_exists=resume_if_exists,
            trial_fn=TRIAL_FN,
            options=DriverOptions(address=address),
            progress=state,
        )
    _run_outcome(outcome, loaded.spec.study, url)


def resume(
    name: str = typer.Argument(..., help="The study to run on."),
    storage: str | None = _storage_opt(),
    add_trials: int = typer.Option(0, "--add-trials", min=0, help="Raise the budget by N trials."),
    join: bool = typer.Option(False, "--join", help="Run beside a live driver of the same study."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address to run on."),
) -> None:
    """Run a stored study on: retry what a dead driver left, then spend the rest of the budget."""
    from . import service  # noqa: PLC0415
    from .driver import DriverOptions  # noqa: PLC0415
    from .progress import ProgressState, live_progress  # noqa: PLC0415

    url = service.storage_url(storage)
    state = ProgressState(name)
    with live_progress(state, _err()):
        outcome = service.resume(
            name,
            storage=url,
            add=add_trials,
            trial_fn=TRIAL_FN,
            options=DriverOptions(address=address, join=join),
            progress=state,
        )
    _run_outcome(outcome, name, url)


def status(
    name: str | None = typer.Argument(None, help="A study: list its trials. None: all studies."),
    storage: str | None = _storage_opt(),
    fmt: str = typer.Option(
        "table", "--format", help="table, json or csv (csv: one study's trials)."
    ),
) -> None:
    """All studies (state, trials by state, Pareto size, hypervolume), or one study's trials."""
    from . import report  # noqa: PLC0415
    from .service import storage_url  # noqa: PLC0415
    from .store import open_store  # noqa: PLC0415

    _check_format(fmt, report.FORMATS)
    store = open_store(storage_url(storage), create=False)
    try:
        if name is None:
            if fmt == "csv":
                raise UserError(
                    "--format csv lists one study's trials: paretune status NAME --format csv"
                )
            rows = report.studies_rows(store)
            if fmt == "json":
                typer.echo(report.to_json(rows))
            else:
                _out().print(report.studies_table(rows))
            return
        head = report.study_row(store, store.get_study(name))
        trials = report.trial_rows(store, name)
        objectives = head["objectives"]
        if fmt == "json":
            typer.echo(report.to_json({**head, "trial_list": trials}))
        elif fmt == "csv":
            typer.echo(report.trials_csv(trials, objectives), nl=False)
        else:
            console = _out()
            hv = f"{head['hypervolume']:.5g}" if head["hypervolume"] is not None else "-"
            console.print(
                f"[bold]{name}[/]: {head['status']}, {head['used']}/{head['budget']} trials, "
                f"Pareto front {head['pareto_size']}, hypervolume {hv}"
            )
            console.print(report.trials_table(name, trials, objectives))
    finally:
        store.dispose()


def pareto(
    name: str = typer.Argument(..., help="The study."),
    storage: str | None = _storage_opt(),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """The non-dominated COMPLETE trials: values, parameters and a readable plan."""
    from . import report  # noqa: PLC0415
    from .service import storage_url  # noqa: PLC0415
    from .store import open_store  # noqa: PLC0415

    _check_format(fmt, report.FORMATS)
    store = open_store(storage_url(storage), create=False)
    try:
        rows = report.pareto_rows(store, name)
        objectives = report.objectives_of(store, name)
        if fmt == "json":
            typer.echo(report.to_json(rows))
        elif fmt == "csv":
            typer.echo(report.pareto_csv(rows, objectives), nl=False)
        else:
            _out().print(report.pareto_table(name, rows, objectives))
    finally:
        store.dispose()


def studies(
    storage: str | None = _storage_opt(),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List the studies in the store."""
    from . import report  # noqa: PLC0415
    from .service import storage_url  # noqa: PLC0415
    from .store import open_store  # noqa: PLC0415

    _check_format(fmt, ("table", "json"))
    store = open_store(storage_url(storage), create=False)
    try:
        rows = report.studies_rows(store)
        if fmt == "json":
            typer.echo(report.to_json(rows))
        else:
            _out().print(report.studies_table(rows))
    finally:
        store.dispose()


def stop(
    name: str = typer.Argument(..., help="The running study."),
    storage: str | None = _storage_opt(),
) -> None:
    """Ask the driver of a running study to stop cleanly; `paretune resume` goes on later."""
    from .service import request_stop  # noqa: PLC0415

    _err().print(request_stop(name, storage=storage))


def delete(
    name: str = typer.Argument(..., help="The study to delete."),
    storage: str | None = _storage_opt(),
    yes: bool = typer.Option(
        False, "--yes", help="Confirm: the trials and metrics are gone for good."
    ),
) -> None:
    """Delete a study: its trials, metrics, events and the Optuna study."""
    from .service import delete as delete_study  # noqa: PLC0415

    _err().print(delete_study(name, storage=storage, yes=yes))


def _masked(url: str) -> str:
    from .urls import mask_url  # noqa: PLC0415

    return mask_url(url)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for fn in (submit, resume, status, pareto, studies, stop, delete):
        app.command(name=fn.__name__)(fn)
