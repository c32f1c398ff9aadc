"""paretune.trainers: models and data, applying plans, the training loop, adapter export.

The package's names below import torch, on first use: ``paretune.trainers.data`` (reading a
task's labelled texts) does not, so the driver may count a task's labels without loading torch;
everything else of this package runs inside trial workers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "load_adapted": ".export",
    "build_trial_model": ".run",
    "train_trial": ".run",
}

__all__ = ["build_trial_model", "load_adapted", "train_trial"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
