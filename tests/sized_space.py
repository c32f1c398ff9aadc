"""A two-parameter space for the asker tests: a size known before training and a learning rate."""

from __future__ import annotations

from typing import Any

SIZES = [10, 100, 1_000, 10_000, 100_000]
LR_LOW, LR_HIGH = 1e-4, 1e-2


def sized(trial: Any) -> dict[str, Any]:
    return {
        "size": trial.suggest_categorical("size", SIZES),
        "lr": trial.suggest_float("lr", LR_LOW, LR_HIGH, log=True),
    }
