"""Optuna samplers by name, all multi-objective and seeded.

``tpe`` uses the constant liar so that concurrent asks do not propose the same configuration.
Measured constraints reach every sampler through the trials themselves: the searcher writes each
finished trial's violations as its Optuna constraints (``trial.constraints``), which TPE, NSGA-II
and GP read (Optuna 5 deprecates the samplers' ``constraints_func``).
"""

from __future__ import annotations

import warnings
from typing import Any

from paretune.spaces.errors import UserError

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(name: str, *, seed: int, n_startup_trials: int = 10, group: bool = False) -> Any:
    """The Optuna sampler ``name``, seeded. ``group``: the space is conditional (``space.combine``
    draws some parameters only for some trials), so multivariate TPE models each group of
    parameters that occur together instead of only those every trial has."""
    import optuna  # noqa: PLC0415

    if name == "tpe":
        with warnings.catch_warnings():  # ``group`` is marked experimental; paretune pins Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                constant_liar=True,
                n_startup_trials=n_startup_trials,
                group=group,
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        try:
            import scipy  # noqa: F401, PLC0415
        except ImportError:
            raise UserError("sampler 'gp' needs scipy: pip install 'paretune[gp]'") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
