"""The ``paretune`` command. Each group of commands lives in its own ``cli_*`` module.

User errors (``paretune.spaces.errors.UserError``) print one line on stderr and exit with status 2;
nothing here imports torch, so every command starts fast.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from paretune.spaces.errors import UserError

from . import cli_dashboard, cli_export, cli_spec, cli_study
from .urls import mask_text

app = typer.Typer(
    name="paretune",
    help="Search PEFT configurations and hyperparameters for the best quality/cost Pareto front.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (cli_spec, cli_study, cli_export, cli_dashboard):
    module.register(app)


def fail(message: str) -> None:
    """Print one clear line on stderr and exit with status 2."""
    sys.stderr.write(f"error: {mask_text(message, None)}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("PARETUNE_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        app()
    except UserError as e:
        fail(str(e))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
