"""``paretune export``: take a COMPLETE trial out of a study as a trained adapter.

``paretune export NAME --trial N --out DIR`` copies the adapter the trial saved when it reached
full fidelity (``<trial_dir>/adapter``; the driver records ``trial_dir`` on each Optuna trial).
``--retrain --seeds K [--steps S]`` rebuilds the trial's configuration from its parameters and
trains it again with seeds 0..K-1, printing the mean and standard deviation of every metric;
with ``--out`` the first seed's adapter is saved. Torch loads only when training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from paretune.search.service.consoles import stderr_console, stdout_console
from paretune.search.store.urls import STORAGE_HELP
from paretune.spaces import with_test_metrics
from paretune.spaces.errors import UserError

FORMATS = ("table", "json")


def find_trial(store: Any, name: str, number: int) -> Any:
    """The COMPLETE Optuna trial ``number`` of study ``name``; a UserError for anything else."""
    import optuna  # noqa: PLC0415

    store.get_study(name)  # unknown study: one line naming the studies there
    try:
        study = optuna.load_study(study_name=name, storage=store.optuna_storage())
    except KeyError:
        raise UserError(
            f"study {name!r} has no Optuna study in {store.masked_url}: it never started"
        ) from None
    trials = study.get_trials(deepcopy=False)
    match = next((t for t in trials if t.number == number), None)
    if match is None:
        known = (
            f"its trials are 0-{max(t.number for t in trials)}"
            if trials
            else "it has no trials yet"
        )
        raise UserError(f"study {name!r} has no trial {number}; {known}")
    if match.state != optuna.trial.TrialState.COMPLETE:
        raise UserError(
            f"trial {number} of study {name!r} is {match.state.name}, not COMPLETE: only trials trained to "
            f"full fidelity are exported (the COMPLETE ones: paretune pareto {name})"
        )
    return match


def _check_out(out: str | None, force: bool) -> None:
    if out is None:
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UserError(
            f"--out {out} exists and is not empty; choose another directory or pass --force"
        )


def _load_hint(directory: Path) -> str:
    if (directory / "adapter_config.json").exists():
        return f"PEFT format: PeftModel.from_pretrained(base, {str(directory)!r})"
    return f"paretune format: paretune.trainers.load_adapted(base, {str(directory)!r})"


def copy_trial_adapter(name: str, trial: Any, out: str) -> Path:
    """Copy the adapter a COMPLETE trial saved into ``out``."""
    import shutil  # noqa: PLC0415

    trial_dir = trial.user_attrs.get("trial_dir")
    source = Path(trial_dir) / "adapter" if trial_dir else None
    if source is None or not source.is_dir():
        where = f"nothing at {source}" if source else "no trial_dir recorded"
        raise UserError(
            f"trial {trial.number} of study {name!r} has no saved adapter ({where}); retrain it: "
            f"paretune export {name} --trial {trial.number} --retrain --seeds 1 --out {out}"
        )
    if Path(out).exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    return Path(out)


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def retrain_table(
    name: str,
    number: int,
    summary: dict[str, dict[str, Any]],
    objectives: list[str],
    study_values: dict[str, float],
) -> Table:
    table = Table(
        title=f"{name} trial {number}: {_seeds(len(next(iter(summary.values()))['values']))}"
    )
    for column in ("metric", "mean", "std", "study trial", "per seed"):
        table.add_column(column, justify="left" if column in ("metric", "per seed") else "right")
    first = [m for m in with_test_metrics(objectives) if m in summary]
    ordered = first + [m for m in summary if m not in first]
    for metric in ordered:
        s = summary[metric]
        fmt = "{:,.0f}" if abs(s["mean"]) >= 1000 else "{:.4f}"
        study = study_values.get(metric)
        table.add_row(
            metric,
            fmt.format(s["mean"]),
            fmt.format(s["std"]),
            "" if study is None else fmt.format(study),
            ", ".join(fmt.format(v) for v in s["values"]),
        )
    return table


def export(
    name: str = typer.Argument(..., help="The study."),
    trial: int = typer.Option(
        ..., "--trial", min=0, help="The trial number (see paretune pareto NAME)."
    ),
    out: str | None = typer.Option(None, "--out", help="Directory to write the adapter to."),
    storage: str | None = typer.Option(None, "--storage", help=STORAGE_HELP, show_default=False),
    retrain: bool = typer.Option(False, "--retrain", help="Train the trial's configuration again."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="With --retrain: seeds 0..K-1."),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="With --retrain: steps (default: search.max_steps)."
    ),
    fmt: str = typer.Option("table", "--format", help="With --retrain: table or json."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty --out directory."),
) -> None:
    """Export a COMPLETE trial's trained adapter, or retrain it over several seeds."""
    from paretune.search.service.lifecycle import storage_url  # noqa: PLC0415
    from paretune.search.store.study_store import open_store  # noqa: PLC0415

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if out is None and not retrain:
        raise UserError(
            "give --out DIR to export the trial's adapter (or --retrain to train it again)"
        )
    _check_out(out, force)
    url = storage_url(storage)
    store = open_store(url, create=False)
    try:
        info = store.get_study(name)
        found = find_trial(store, name, trial)
    finally:
        store.dispose()
    err = stderr_console(highlight=False, soft_wrap=True)
    if not retrain:
        path = copy_trial_adapter(name, found, out)  # type: ignore[arg-type]
        err.print(f"exported trial {trial} of {name} to {path} ({_load_hint(path)})")
        return
    _retrain(info, found, name, seeds=seeds, steps=steps, out=out, fmt=fmt, err=err, url=url)


def _retrain(
    info: Any,
    found: Any,
    name: str,
    *,
    seeds: int,
    steps: int | None,
    out: str | None,
    fmt: str,
    err: Console,
    url: str,
) -> None:
    from paretune.spaces import StudySpec, config_from_params, dims_from_config, resolve_model  # noqa: PLC0415

    spec = StudySpec.model_validate_json(info.spec_json)
    source = resolve_model(
        spec.model.name,
        trust_remote_code=spec.model.trust_remote_code,
        revision=spec.model.revision,
    )
    config = config_from_params(
        found.params,
        spec,
        dims_from_config(source.config, spec.task.num_labels or 2, spec.task.type),
    )
    steps = steps or info.max_steps or spec.search.max_steps  # the table's: raised by --max-steps
    err.print(
        f"retraining trial {found.number} of {name}: {config.plan.summary()}, {_seeds(seeds)} x {steps} steps"
    )

    from paretune.trainers.retrain import retrain, summarize  # noqa: PLC0415 - torch loads here

    shown = with_test_metrics(spec.objective_names)

    def on_seed(seed: int, metrics: dict[str, float]) -> None:
        err.print(
            f"  seed {seed}: " + ", ".join(f"{k} {metrics[k]:.4g}" for k in shown if k in metrics)
        )
        record_seed(url, info.id, found.number, seed, steps, metrics, err)

    runs = retrain(spec, config, seeds=seeds, steps=steps, out_dir=out, on_seed=on_seed)
    summary = summarize(runs)
    study_values = dict(zip(spec.objective_names, found.values or [], strict=False))
    if fmt == "json":
        payload = {
            "study": name,
            "trial": found.number,
            "summary": config.plan.summary(),
            "steps": steps,
            "seeds": list(range(seeds)),
            "metrics": summary,
            "study_values": study_values,
            "adapter": out,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        stdout_console(highlight=False).print(
            retrain_table(name, found.number, summary, spec.objective_names, study_values)
        )
    if out is not None:
        err.print(f"seed 0's adapter: {out} ({_load_hint(Path(out))})")


def record_seed(
    url: str,
    study_id: int,
    number: int,
    seed: int,
    steps: int,
    metrics: dict[str, float],
    err: Console,
) -> None:
    """Keep a retrained seed's metrics in the study's event log (the dashboard's trial detail
    lists them), as soon as the seed ends: a later seed's crash loses none of them. A store that
    cannot take the event costs a warning, not the retraining."""
    from paretune.search.store.study_store import RETRAINED, open_store, root_message  # noqa: PLC0415

    detail = {"seed": seed, "steps": steps, "metrics": {k: float(v) for k, v in metrics.items()}}
    try:
        store = open_store(url, create=False)
        try:
            store.log_event(study_id, RETRAINED, detail, trial_number=number)
        finally:
            store.dispose()
    except Exception as exc:  # noqa: BLE001 - the figures are printed either way
        err.print(f"  seed {seed} not recorded in the store: {root_message(exc)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("export")(export)
