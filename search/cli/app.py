"""The ``paretune`` command. Each group of commands lives in its own module of this package.

User errors (``paretune.spaces.errors.UserError``) print one line on stderr and exit with status 2;
nothing here imports torch, so every command starts fast.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

try:  # typer >= 0.16 vendors click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors  # type: ignore[no-redef]

from paretune.search.cli import dashboard as cli_dashboard
from paretune.search.cli import export as cli_export
from paretune.search.cli import spec as cli_spec
from paretune.search.cli import study as cli_study
from paretune.search.store.urls import mask_text
from paretune.spaces.errors import UserError

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
        code = app(standalone_mode=False)
    except UserError as e:
        fail(str(e))
    except click_errors.NoArgsIsHelpError as e:
        e.show()
        raise SystemExit(e.exit_code) from None
    except click_errors.UsageError as e:  # a bad option or argument: one line too, status 2
        where = e.ctx.command_path if e.ctx else "paretune"
        fail(f"{e.format_message()} (see `{where} --help`)")
    except click_errors.ClickException as e:
        sys.stderr.write(f"error: {mask_text(e.format_message(), None)}\n")
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    if isinstance(code, int) and code:  # typer.Exit(N) comes back as a return value
        raise SystemExit(code)


if __name__ == "__main__":
    main()
