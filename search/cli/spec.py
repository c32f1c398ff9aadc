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

from paretune.search.service.consoles import stderr_console, stdout_console
from paretune.spaces import (
    LoadedSpec,
    ModelDims,
    SpecError,
    check_against_model,
    count_trainable,
    describe_space,
    dims_from_config,
    load_spec,
    resolve_model,
)
from paretune.spaces.errors import UserError
from paretune.spaces.given import config_from_given, parameters

err = stderr_console()


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
    dims = dims_from_config(source.config, num_labels or spec.task.num_labels or 2, spec.task.type)
    check_against_model(loaded, dims)
    return loaded, dims, source


def task_labels(loaded: LoadedSpec) -> int:
    """Read the task's data to learn its label count (and fail early on bad data); 0 for a
    causal LM, whose examples are read and checked all the same."""
    if loaded.spec.task.type == "causal_lm":
        from paretune.trainers.sft_data import load_examples  # noqa: PLC0415 - no torch

        load_examples(loaded.spec.task)
        return 0
    from paretune.trainers.data import load_dataset  # noqa: PLC0415 - reads files only

    return len(load_dataset(loaded.spec.task).label_names)


def expand_params(raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Expand glob keys (``lora.rank.*.query``) onto the searched parameter names; a key ending
    in ``.*`` also names its stem (``lora.rank.*`` is ``lora.rank`` in a ``mode: all`` space)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if any(c in key for c in "*?["):
            matches = [
                n
                for n in names
                if fnmatch.fnmatchcase(n, key) or (key.endswith(".*") and n == key[:-2])
            ]
            if not matches:
                raise UserError(
                    f"--params key {key!r} matches no parameter; the space has: {', '.join(names)}"
                )
        else:
            matches = [key]
        for m in matches:
            out.setdefault(m, value)
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


def validate(
    spec: str = typer.Argument(..., help="study spec (YAML)"),
    list_params: bool = typer.Option(
        False,
        "--params",
        help="also list the space's parameter names and choices (what `trial --params` takes) "
        "and the space a preset expands to",
    ),
) -> None:
    """Check a spec: model dimensions, search dimensions, size of the space, parameter range."""
    loaded, _, source = load_checked(spec)
    num_labels = task_labels(loaded)
    dims = dims_from_config(source.config, num_labels, loaded.spec.task.type)
    check_against_model(loaded, dims)
    summary = describe_space(loaded.spec, dims)
    out = stdout_console()
    out.print(f"[green]ok[/] {spec}: study [bold]{loaded.spec.study}[/]")
    table = Table(show_header=False, box=None)
    table.add_row("model", f"{loaded.spec.model.name}: {dims.describe()}")
    table.add_row("target modules", target_names(dims))
    table.add_row(
        "blocks",
        f"{dims.n_layers} under {dims.block_path}; norms: "
        + (", ".join(dims.norms_per_block) or "none"),
    )
    task = loaded.spec.task
    if task.type == "causal_lm":
        what = "prompt -> completion" + (", loss on the prompt too" if task.train_on_prompt else "")
        table.add_row("data", f"{task.dataset} (causal_lm: {what}, max_length {task.max_length})")
    else:
        table.add_row("data", f"{task.dataset} ({num_labels} labels)")
    table.add_row(
        "objectives", ", ".join(f"{o.name} ({o.direction})" for o in loaded.spec.objectives)
    )
    table.add_row("search dimensions", str(summary.n_dimensions))
    table.add_row("space size", summary.size_text)
    table.add_row(
        "trainable parameters",
        f"{summary.min_params:,} .. {summary.max_params:,} "
        + ("(the LM head stays frozen)" if dims.task == "causal_lm" else "(head included)"),
    )
    table.add_row("rungs (steps)", ", ".join(map(str, loaded.spec.search.rungs())))
    out.print(table)
    if list_params:
        print_parameters(out, loaded, dims)


def print_parameters(out: Console, loaded: LoadedSpec, dims: ModelDims) -> None:
    """The space as ``trial --params`` sees it: each parameter and its choices, then the space
    section a preset expands to (as YAML)."""
    table = Table(title="searched parameters (trial --params)", title_justify="left")
    table.add_column("parameter", no_wrap=True)
    table.add_column("choices")
    for name, param in parameters(loaded.spec, dims).items():
        table.add_row(name, param.describe())
    out.print(table)
    space = loaded.spec.space
    if space.preset:
        import yaml  # noqa: PLC0415

        expanded = space.model_dump(mode="json", exclude_unset=True, exclude={"preset"})
        out.print(f"preset {space.preset!r} expands to:")
        out.print(
            yaml.safe_dump({"space": expanded}, sort_keys=False, default_flow_style=None),
            end="",
            markup=False,
        )


def target_names(dims: ModelDims) -> str:
    """The targets a spec may name on this model, each with its module path in a block."""
    return ", ".join(
        t if t == shape.path else f"{t} ({shape.path})" for t, shape in dims.targets.items()
    )


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
    dims = dims_from_config(source.config, num_labels, loaded.spec.task.type)
    given = expand_params(parse_params(params), list(parameters(loaded.spec, dims)))
    config = config_from_given(given, loaded.spec, dims)
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
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("trial")(trial)


__all__ = ["SpecError", "load_checked", "register"]
