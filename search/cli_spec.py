"""``paretune validate`` and ``paretune trial``: check a spec, train one configuration."""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from paretune.spaces import (
    LoadedSpec,
    ModelDims,
    SpecError,
    check_against_model,
    config_from_params,
    count_trainable,
    describe_space,
    dims_from_config,
    load_spec,
    resolve_model,
)
from paretune.spaces.errors import UserError
from paretune.spaces.families import FAMILIES
from paretune.spaces.space import HPARAMS

err = Console(stderr=True)


def load_checked(path: str, *, num_labels: int | None = None) -> tuple[LoadedSpec, ModelDims, Any]:
    """Load a spec, resolve its model and check the space against the model's dimensions."""
    loaded = load_spec(path)
    spec = loaded.spec
    if spec.model.trust_remote_code:
        err.print("[yellow]warning:[/] trust_remote_code is on: the model's own code will run")
    source = resolve_model(
        spec.model.name,
        trust_remote_code=spec.model.trust_remote_code,
        revision=spec.model.revision,
    )
    dims = dims_from_config(source.config, num_labels or spec.task.num_labels or 2)
    check_against_model(loaded, dims)
    return loaded, dims, source


def task_labels(loaded: LoadedSpec) -> int:
    """Read the task's data to learn its label count (and fail early on bad data)."""
    from paretune.trainers.data import load_dataset  # noqa: PLC0415 - reads files only

    return len(load_dataset(loaded.spec.task).label_names)


def searched_names(loaded: LoadedSpec, dims: ModelDims) -> list[str]:
    spec = loaded.spec
    layers = spec.space.resolve_layers(dims.n_layers)
    names = [
        n
        for fam, section in spec.space.enabled_families()
        for n, _ in FAMILIES[fam].dimensions(section, dims, layers)
    ]
    from paretune.spaces.dims import is_searched  # noqa: PLC0415

    return names + [h for h in HPARAMS if is_searched(getattr(spec.space, h))]


def expand_params(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Expand glob keys (``lora.rank.*.query``) onto the searched parameter names."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        matches = (
            [n for n in names if fnmatch.fnmatchcase(n, key)]
            if any(c in key for c in "*?[")
            else [key]
        )
        if not matches:
            raise UserError(
                f"--params key {key!r} matches no parameter; parameters: {', '.join(names[:12])}..."
            )
        for m in matches:
            out.setdefault(m, value)
    unknown = [k for k in out if k not in names]
    if unknown:
        raise UserError(
            f"--params has unknown parameter {unknown[0]!r}; the space has: {', '.join(names)}"
        )
    return out


def parse_params(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise UserError(f"--params file {text[1:]} cannot be read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--params is not valid JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(data, dict):
        raise UserError("--params must be a JSON object of parameter name -> value")
    return data


def validate(spec: str = typer.Argument(..., help="study spec (YAML)")) -> None:
    """Check a spec: model dimensions, search dimensions, size of the space, parameter range."""
    loaded, _, source = load_checked(spec)
    num_labels = task_labels(loaded)
    dims = dims_from_config(source.config, num_labels)
    check_against_model(loaded, dims)
    found = _found_targets(source, dims)
    summary = describe_space(loaded.spec, dims)
    out = Console()
    out.print(f"[green]ok[/] {spec}: study [bold]{loaded.spec.study}[/]")
    table = Table(show_header=False, box=None)
    table.add_row("model", f"{loaded.spec.model.name}: {dims.describe()}")
    table.add_row("target modules", ", ".join(found))
    table.add_row("data", f"{loaded.spec.task.dataset} ({num_labels} labels)")
    table.add_row(
        "objectives", ", ".join(f"{o.name} ({o.direction})" for o in loaded.spec.objectives)
    )
    table.add_row("search dimensions", str(summary.n_dimensions))
    table.add_row("space size", summary.size_text)
    table.add_row(
        "trainable parameters", f"{summary.min_params:,} .. {summary.max_params:,} (head included)"
    )
    table.add_row("rungs (steps)", ", ".join(map(str, loaded.spec.search.rungs())))
    out.print(table)


def _found_targets(source: Any, dims: ModelDims) -> list[str]:
    """Targets present in every block of the real module tree (built on the meta device)."""
    try:
        from paretune.trainers.models import module_names  # noqa: PLC0415
    except ImportError:  # trainers not installed: trust the table
        return list(dims.targets)
    names = module_names(source, dims.num_labels)
    found = []
    for t in dims.targets:
        if all(dims.module_name(i, t) in names for i in range(dims.n_layers)):
            found.append(t)
    missing = [t for t in dims.targets if t not in found]
    if missing:
        raise UserError(
            f"model {source.name!r} lacks modules paretune expects for {dims.arch}: {', '.join(missing)}"
        )
    return found


def trial(
    spec: str = typer.Argument(..., help="study spec (YAML)"),
    params: str = typer.Option(
        "{}", "--params", help="JSON object (or @file) of parameter values; glob keys allowed"
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="training steps (default: search.max_steps)"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print one JSON object of metrics on stdout"
    ),
    eval_every: int | None = typer.Option(
        None, "--eval-every", min=1, help="evaluate every N steps"
    ),
) -> None:
    """Train one configuration of the spec's space and print its metrics."""
    loaded, dims, source = load_checked(spec)
    num_labels = task_labels(loaded)
    dims = dims_from_config(source.config, num_labels)
    raw = expand_params(parse_params(params), searched_names(loaded, dims))
    try:
        config = config_from_params(raw, loaded.spec, dims)
    except ValueError as e:
        missing = [n for n in searched_names(loaded, dims) if n not in raw]
        if missing:
            more = "..." if len(missing) > 8 else ""
            raise UserError(
                f"--params lacks searched parameters: {', '.join(missing[:8])}{more}"
            ) from None
        raise UserError(f"--params does not fix the configuration: {e}") from None
    steps = max_steps or loaded.spec.search.max_steps
    evals = (
        list(range(eval_every, steps + 1, eval_every))
        if eval_every
        else [s for s in loaded.spec.search.rungs() if s < steps]
    )
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from paretune.trainers import train_trial  # noqa: PLC0415 - torch loads here, not at start-up

    err.print(
        f"training [bold]{config.plan.summary()}[/] ({count_trainable(config.plan, dims):,} trainable parameters)"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=as_json) as bar:
        task = bar.add_task("steps", total=steps)

        def report(step: int, metrics: dict[str, float]) -> bool:
            bar.update(
                task, description=f"acc {metrics['accuracy']:.3f} loss {metrics['eval_loss']:.3f}"
            )
            return True

        metrics = train_trial(
            loaded.spec,
            config,
            report,
            max_steps=steps,
            eval_steps=evals,
            progress=lambda s: bar.update(task, completed=s),
        )
    if as_json:
        sys.stdout.write(
            json.dumps({**metrics, "steps": steps, "summary": config.plan.summary()}) + "\n"
        )
        return
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("trial")(trial)


__all__ = ["SpecError", "load_checked", "register"]
