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

from paretune.search.service.consoles import stderr_console, stdout_console
from paretune.search.service.trainable import TrialFn
from paretune.search.store.urls import STORAGE_HELP
from paretune.spaces.errors import UserError
from paretune.spaces.numbers import format_hypervolume

# The trial function submit/resume run; None means paretune.trainers.train_trial. Tests swap in
# a fake trainer here (a callable, or a "module:function" path importable by the Ray workers).
TRIAL_FN: TrialFn | str | None = None


def _trial_fn() -> TrialFn | str | None:
    """TRIAL_FN, else ``$PARETUNE_TRIAL_FN`` ("module:function"; how a cluster job gets a custom one)."""
    import os  # noqa: PLC0415

    return TRIAL_FN if TRIAL_FN is not None else os.environ.get("PARETUNE_TRIAL_FN") or None


def _storage_opt() -> Any:
    return typer.Option(None, "--storage", help=STORAGE_HELP, show_default=False)


def _out() -> Console:
    return stdout_console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return stderr_console(highlight=False)


def _check_format(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"unknown format {value!r}; allowed: {', '.join(allowed)}")
    return value


def _run_outcome(outcome: Any, name: str, storage: str | None) -> None:
    """Print how the run ended and the front; exit 130 when it was interrupted."""
    from paretune.search.cli import report  # noqa: PLC0415
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

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
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        help="Submit the driver as a Ray Job to this cluster's dashboard (http://HEAD:8265) and return at once.",
    ),
    cluster_storage: str | None = typer.Option(
        None,
        "--cluster-storage",
        help="The study store URL as the cluster reaches it (default: the same URL); 'env': the cluster's $PARETUNE_STORAGE.",
        show_default=False,
    ),
) -> None:
    """Create a study from SPEC and run it here, with live progress (Ctrl-C stops cleanly),
    or with --cluster as a Ray Job on a cluster."""
    from paretune.search.service import lifecycle as service  # noqa: PLC0415
    from paretune.search.service.driver import DriverOptions  # noqa: PLC0415
    from paretune.search.service.progress import ProgressState, live_progress  # noqa: PLC0415
    from paretune.spaces import load_spec  # noqa: PLC0415

    loaded = load_spec(spec_path)
    url = service.storage_url(storage, loaded.spec)
    if cluster:
        _submit_job(loaded, url, cluster, cluster_storage, address, resume_if_exists)
        return
    state = ProgressState(loaded.spec.study)
    _err().print(f"study [bold]{loaded.spec.study}[/] in {_masked(url)}", soft_wrap=True)
    if loaded.spec.model.trust_remote_code:
        _err().print("[yellow]warning:[/] trust_remote_code is on: the model's own code will run")
    with live_progress(state, _err()):
        outcome = service.submit(
            loaded,
            storage=url,
            resume_if_exists=resume_if_exists,
            trial_fn=_trial_fn(),
            options=DriverOptions(address=address),
            progress=state,
        )
    _run_outcome(outcome, loaded.spec.study, url)


def resume(
    name: str = typer.Argument(..., help="The study to run on."),
    storage: str | None = _storage_opt(),
    add_trials: int = typer.Option(0, "--add-trials", min=0, help="Raise the budget by N trials."),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        min=1,
        help="Raise the top fidelity to M steps: the Pareto trials at the old one continue from their checkpoints.",
        show_default=False,
    ),
    join: bool = typer.Option(False, "--join", help="Run beside a live driver of the same study."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address to run on."),
) -> None:
    """Run a stored study on: retry what a dead driver left, then spend the rest of the budget.
    With --max-steps M, deepen it first (iterative deepening)."""
    from paretune.search.service import lifecycle as service  # noqa: PLC0415
    from paretune.search.service.driver import DriverOptions  # noqa: PLC0415
    from paretune.search.service.progress import ProgressState, live_progress  # noqa: PLC0415

    url = service.storage_url(storage)
    state = ProgressState(name)
    with live_progress(state, _err()):
        outcome = service.resume(
            name,
            storage=url,
            add=add_trials,
            max_steps=max_steps,
            trial_fn=_trial_fn(),
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
    from paretune.search.cli import report  # noqa: PLC0415
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

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
        info = store.get_study(name)
        head = report.study_row(store, info)
        trials = report.trial_rows(store, name)
        objectives = head["objectives"]
        job = _job_summary(info)
        if fmt == "json":
            extra = {"job": job} if job else {}
            typer.echo(report.to_json({**head, **extra, "trial_list": trials}))
        elif fmt == "csv":
            typer.echo(report.trials_csv(trials, objectives), nl=False)
        else:
            console = _out()
            hv = format_hypervolume(head["hypervolume"])
            console.print(
                f"[bold]{name}[/]: {head['status']}, {head['used']}/{head['budget']} trials, "
                f"Pareto front {head['pareto_size']}, hypervolume {hv}"
            )
            if job:
                console.print(f"job {job['id']} on {job['cluster']}: {job['state']}")
            console.print(report.trials_table(name, trials, objectives))
    finally:
        store.dispose()


def pareto(
    name: str = typer.Argument(..., help="The study."),
    storage: str | None = _storage_opt(),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """The non-dominated COMPLETE trials: values, parameters and a readable plan."""
    from paretune.search.cli import report  # noqa: PLC0415
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

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
    from paretune.search.cli import report  # noqa: PLC0415
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

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
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        min=0,
        help="A study running as a Ray Job: seconds to wait for it to end before stopping the job.",
    ),
) -> None:
    """Ask the driver of a running study to stop cleanly; `paretune resume` goes on later.
    A study submitted with --cluster: its job is stopped through Ray if it has not ended after --timeout."""
    from paretune.search.service.lifecycle import request_stop, storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

    store = open_store(storage_url(storage), create=False)
    try:
        has_job = bool(store.get_study(name).job_id)
    finally:
        store.dispose()
    if has_job:
        from paretune.search.service.cluster import stop_job  # noqa: PLC0415

        _err().print(stop_job(name, storage=storage_url(storage), timeout_s=timeout))
        return
    _err().print(request_stop(name, storage=storage))


def logs(
    name: str = typer.Argument(..., help="A study submitted with --cluster."),
    storage: str | None = _storage_opt(),
) -> None:
    """Print the log of the Ray Job that runs the study."""
    from paretune.search.service.cluster import job_logs  # noqa: PLC0415
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415

    typer.echo(job_logs(name, storage=storage_url(storage)), nl=False)


def delete(
    name: str = typer.Argument(..., help="The study to delete."),
    storage: str | None = _storage_opt(),
    yes: bool = typer.Option(
        False, "--yes", help="Confirm: the trials and metrics are gone for good."
    ),
) -> None:
    """Delete a study: its trials, metrics, events and the Optuna study."""
    from paretune.search.service.lifecycle import delete as delete_study  # noqa: PLC0415

    _err().print(delete_study(name, storage=storage, yes=yes))


def _submit_job(
    loaded: Any,
    url: str,
    cluster: str,
    cluster_storage: str | None,
    address: str | None,
    resume_if_exists: bool,
) -> None:
    from paretune.search.service.cluster import submit_to_cluster  # noqa: PLC0415

    if address:
        raise UserError("--address and --cluster exclude each other: the job runs on the cluster")
    done = submit_to_cluster(
        loaded,
        cluster=cluster,
        storage=url,
        cluster_storage=cluster_storage,
        resume_if_exists=resume_if_exists,
    )
    _err().print(f"study [bold]{done.study}[/] in {_masked(url)}: submitted to {cluster}")
    typer.echo(f"job_id: {done.job_id}\nstudy: {done.study}")


def _job_summary(info: Any) -> dict[str, Any] | None:
    if not info.job_id:
        return None
    from paretune.search.service.cluster import job_summary  # noqa: PLC0415

    return job_summary(info)


def _masked(url: str) -> str:
    from paretune.search.store.urls import mask_url  # noqa: PLC0415

    return mask_url(url)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for fn in (submit, resume, status, pareto, studies, stop, logs, delete):
        app.command(name=fn.__name__)(fn)
