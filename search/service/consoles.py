"""The consoles the CLI prints through: a table piped to a file or another program keeps its
full width (Rich would cut it at 80 columns, ``twee...``), a terminal gets its own width."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

PIPE_WIDTH = 1000  # wide enough for any table paretune prints; tables take only what they need


def _width(stream: Any) -> int | None:
    try:
        return None if stream.isatty() else PIPE_WIDTH
    except (AttributeError, ValueError):  # a closed or odd stream: as if piped
        return PIPE_WIDTH


def stdout_console(**kwargs: Any) -> Console:
    return Console(width=_width(sys.stdout), **kwargs)


def stderr_console(**kwargs: Any) -> Console:
    return Console(stderr=True, width=_width(sys.stderr), **kwargs)
