"""Commands registered on the ``paretune`` app (filled in by their capability)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
