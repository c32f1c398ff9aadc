"""Optuna samplers by name, all multi-objective and seeded.

``tpe`` uses the constant liar so that concurrent asks do not propose the same configuration.
"""

from __future__ import annotations

from typing import Any

from paretune.spaces.errors import UserError

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(
    name: str, *, seed: int, constraints_func: Any = None, n_startup_trials: int = 10
) -> Any:
    """The Optuna sampler ``name``; ``constraints_func`` marks measured constraint violations."""
    import optuna  # noqa: PLC0415

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            constant_liar=True,
            n_startup_trials=n_startup_trials,
            constraints_func=constraints_func,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints_func)
    if name == "gp":
        try:
            import scipy  # noqa: F401, PLC0415
        except ImportError:
            raise UserError("sampler 'gp' needs scipy: pip install 'paretune[gp]'") from None
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=n_startup_trials, constraints_func=constraints_func
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
