"""One study, ready for the views: trials with objective columns, the Pareto front, hover text.

Pure: built from the frames of :mod:`paretune.search.store.read`, no database, no Streamlit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from paretune.search.store.read import StudyRecord

from .analysis import at_top_fidelity, front_hypervolume, pareto_numbers, parse_reference
from .spec_view import SpecView, spec_view

PLACEMENT_PARAM = re.compile(r"\.L\d+(\.|$)")
HOVER_PARAMS = 6


@dataclass(frozen=True)
class StudyData:
    record: StudyRecord
    spec: SpecView
    trials: pd.DataFrame  # one row per trial; objective columns named after the objectives
    params: pd.DataFrame  # indexed by trial number
    distributions: dict[str, str] = field(default_factory=dict)
    front: tuple[int, ...] = ()
    reference: dict[str, float] | None = None
    hypervolume: float | None = None
    hypervolume_source: str = ""

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.spec.objectives

    @property
    def directions(self) -> dict[str, str]:
        return dict(zip(self.spec.objectives, self.spec.directions, strict=True))

    @property
    def states(self) -> dict[str, int]:
        return (
            {str(k): int(v) for k, v in self.trials["state"].value_counts().items()}
            if len(self.trials)
            else {}
        )

    @property
    def n_running(self) -> int:
        return self.states.get("RUNNING", 0)

    def complete(self) -> pd.DataFrame:
        """COMPLETE trials with every objective value finite."""
        t = self.trials[self.trials["state"] == "COMPLETE"]
        for o in self.objectives:
            t = t[
                np.isfinite(
                    pd.to_numeric(t[o], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                )
            ]
        return t

    def hyperparameters(self) -> list[str]:
        """Searched parameters that are not per-layer placements (learning rate, dropout, ...)."""
        return [p for p in self.params.columns if not PLACEMENT_PARAM.search(str(p))]

    def placement_params(self) -> list[str]:
        return [p for p in self.params.columns if PLACEMENT_PARAM.search(str(p))]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    if isinstance(v, np.floating):
        return _fmt(float(v))
    return str(v)


def name_objectives(trials: pd.DataFrame, objectives: tuple[str, ...]) -> pd.DataFrame:
    """Rename v0..v{k-1} to the objective names. An attribute of the same name (the
    ``trainable_params`` user attribute) fills in where the trial has no objective values."""
    out = trials.copy()
    for i, name in enumerate(objectives):
        col = f"v{i}"
        values = (
            pd.to_numeric(out[col], errors="coerce")
            if col in out.columns
            else pd.Series(np.nan, index=out.index)
        )
        if name in out.columns:
            values = values.fillna(pd.to_numeric(out[name], errors="coerce"))
        out[name] = values.astype(float)
    return out.drop(
        columns=[
            f"v{i}"
            for i in range(len(objectives))
            if f"v{i}" in out.columns and f"v{i}" not in objectives
        ]
    )


def hover_text(
    trials: pd.DataFrame, objectives: tuple[str, ...], params: pd.DataFrame, hparams: list[str]
) -> list[str]:
    """``trial 12 (COMPLETE)``, the plan summary, the objective values and the hyperparameters."""
    shown = hparams[:HOVER_PARAMS]
    lookup = params[shown] if shown and len(params) else None
    out = []
    for row in trials[["number", "state", "summary", *objectives]].itertuples(index=False):
        number, state, summary = row[0], row[1], row[2]
        lines = [f"<b>trial {number}</b> ({state})"]
        if summary:
            lines.append(str(summary)[:160])
        lines.append(
            " · ".join(f"{o} = {_fmt(v)}" for o, v in zip(objectives, row[3:], strict=True))
        )
        if lookup is not None and number in lookup.index:
            lines.append(" · ".join(f"{p} = {_fmt(v)}" for p, v in lookup.loc[number].items()))
        out.append("<br>".join(lines))
    return out


def build_study_data(
    record: StudyRecord,
    trials_raw: pd.DataFrame,
    params: pd.DataFrame,
    distributions: dict[str, str],
    recorded_hypervolume: float | None,
    reference_detail: Any,
) -> StudyData:
    spec = spec_view(record.spec_json, record.optuna_directions, record.max_steps)
    trials = name_objectives(trials_raw, spec.objectives)
    if "steps" in trials.columns:
        trials["at_top"] = at_top_fidelity(trials["steps"], spec.max_steps)
    data = StudyData(record, spec, trials, params, distributions)
    hparams = data.hyperparameters()
    trials["hover"] = hover_text(trials, spec.objectives, params, hparams)
    front = pareto_numbers(trials, spec.objectives, spec.directions)
    reference = spec.reference_point or parse_reference(reference_detail, spec.objectives)
    if recorded_hypervolume is not None:
        hv, source = float(recorded_hypervolume), "recorded"
    else:
        hv = front_hypervolume(trials, spec.objectives, spec.directions, reference)
        source = "computed" if hv is not None else ""
    return StudyData(
        record, spec, trials, params, distributions, tuple(front), reference, hv, source
    )
