"""Parameter importance per objective, with Optuna's evaluator, on the COMPLETE trials.

The trials come from the dashboard's SQL frames, not from loading the stored study: they are put
into an in-memory Optuna study (fast), and ``optuna.importance.get_param_importances`` runs once
per objective with ``target`` returning that objective in minimisation form (PED-ANOVA, Optuna's
default evaluator, ranks parameters by how much they matter for reaching *low* target values).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

MIN_TRIALS = 8
MAX_TRIALS = 500  # a seeded random sample above this: importance stays under a second

log = logging.getLogger(__name__)


class TooFewTrials(ValueError):
    """Importance needs more COMPLETE trials than the study has."""


def _build_study(
    params: pd.DataFrame,
    distributions: Mapping[str, str],
    values: pd.DataFrame,
    columns: Sequence[str],
    directions: Sequence[str],
) -> Any:
    import optuna  # noqa: PLC0415
    from optuna.distributions import json_to_distribution  # noqa: PLC0415

    dists = {k: json_to_distribution(v) for k, v in distributions.items()}
    study = optuna.create_study(directions=list(directions))
    trials = []
    for row in values.itertuples(index=False):
        number = int(row.number)
        if number not in params.index:
            continue
        p = {
            k: v
            for k, v in params.loc[number].items()
            if k in dists and not (isinstance(v, float) and v != v)
        }
        try:
            trials.append(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE,
                    values=[float(getattr(row, c)) for c in columns],
                    params=p,
                    distributions={k: dists[k] for k in p},
                )
            )
        except (ValueError, TypeError) as e:  # a value outside today's distribution
            log.debug("trial %s left out of importance: %s", number, e)
    study.add_trials(trials)
    return study


def param_importances(
    params: pd.DataFrame,
    distributions: Mapping[str, str],
    values: pd.DataFrame,
    objectives: Sequence[str],
    columns: Sequence[str],
    directions: Sequence[str],
    *,
    min_trials: int = MIN_TRIALS,
    max_trials: int = MAX_TRIALS,
) -> dict[str, dict[str, float]]:
    """{objective: {param: importance}} from the COMPLETE trials in ``values``.

    ``values`` has a ``number`` column and one column per objective (``columns``, in objective
    order); ``params`` is indexed by trial number. Raises TooFewTrials below ``min_trials``;
    above ``max_trials`` a seeded random sample of that many trials is used.
    """
    import optuna  # noqa: PLC0415

    values = values.dropna(subset=list(columns))
    if len(values) > max_trials:
        values = values.sample(n=max_trials, random_state=0)
    if len(values) < min_trials:
        raise TooFewTrials(
            f"parameter importance needs at least {min_trials} COMPLETE trials; this study has {len(values)}"
        )
    varying = [
        k for k in distributions if k in params.columns and params[k].astype(str).nunique() > 1
    ]
    if not varying:
        raise TooFewTrials("no searched parameter varies across the COMPLETE trials")
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = _build_study(
                params, {k: distributions[k] for k in varying}, values, columns, directions
            )
            if len(study.trials) < min_trials:
                raise TooFewTrials(
                    f"parameter importance needs at least {min_trials} COMPLETE trials with known parameters"
                )
            out: dict[str, dict[str, float]] = {}
            for i, (name, direction) in enumerate(zip(objectives, directions, strict=True)):
                sign = -1.0 if direction == "maximize" else 1.0
                imp = optuna.importance.get_param_importances(
                    study, target=lambda t, i=i, s=sign: s * t.values[i]
                )
                out[name] = {k: float(v) for k, v in imp.items()}
            return out
    finally:
        optuna.logging.set_verbosity(previous)


def describe(distribution_json: str) -> str:
    """A short description of a parameter's distribution for tables."""
    try:
        d = json.loads(distribution_json)
    except ValueError:
        return ""
    name = d.get("name", "")
    attrs = d.get("attributes", {})
    if "choices" in attrs:
        return f"{name}: {attrs['choices']}"
    return f"{name}: [{attrs.get('low')}, {attrs.get('high')}]" + (
        " log" if attrs.get("log") else ""
    )
