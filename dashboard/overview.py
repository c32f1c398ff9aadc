"""The studies table: every study with its state, trials by state, Pareto size and hypervolume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from paretune.search.store.read import STATES, StudyRecord, constraints_hold

from .analysis import (
    at_top_fidelity,
    front_hypervolume,
    pareto_numbers,
    parse_reference,
)
from .spec_view import spec_view

COLUMNS = [
    "study",
    "status",
    *STATES,
    "trials",
    "budget",
    "pareto_size",
    "hypervolume",
    "hv_source",
    "last_update",
    "objectives",
]


def overview_frame(
    records: Sequence[StudyRecord],
    counts: pd.DataFrame,
    hv_latest: pd.DataFrame,
    values: pd.DataFrame,
    reference_details: Mapping[int, Any],
) -> pd.DataFrame:
    """One row per study (see COLUMNS). ``values`` is :func:`paretune.search.store.read.complete_values`."""
    by_optuna = counts.set_index("optuna_id") if len(counts) else pd.DataFrame(columns=list(STATES))
    hv = dict(zip(hv_latest["study_id"], hv_latest["value"], strict=True)) if len(hv_latest) else {}
    rows = []
    for r in records:
        spec = spec_view(r.spec_json, r.optuna_directions, r.max_steps)
        row: dict[str, Any] = {"study": r.name, "status": r.status}
        for s in STATES:
            row[s] = int(by_optuna.loc[r.optuna_id, s]) if r.optuna_id in by_optuna.index else 0
        row["trials"] = sum(row[s] for s in STATES)
        row["budget"] = r.n_trials
        mine = values[values["optuna_id"] == r.optuna_id] if len(values) else values
        frame = pd.DataFrame({"number": mine["number"] if len(mine) else []})
        frame["state"] = "COMPLETE"
        columns = list(spec.objectives)
        for i, o in enumerate(columns):
            frame[o] = mine[f"v{i}"].to_numpy() if f"v{i}" in mine.columns else float("nan")
        cons = (
            mine["constraints"] if "constraints" in mine.columns else pd.Series([None] * len(mine))
        )
        frame["feasible"] = [constraints_hold(c) for c in cons]
        steps = mine["steps"] if "steps" in mine.columns else pd.Series([None] * len(mine))
        frame["at_top"] = at_top_fidelity(steps.reset_index(drop=True), spec.max_steps).to_numpy()
        row["pareto_size"] = (
            len(pareto_numbers(frame, columns, spec.directions)) if len(frame) else 0
        )
        if r.id in hv:
            row["hypervolume"], row["hv_source"] = float(hv[r.id]), "recorded"
        else:
            reference = spec.reference_point or parse_reference(
                reference_details.get(r.id), spec.objectives
            )
            value = (
                front_hypervolume(frame, columns, spec.directions, reference)
                if len(frame)
                else None
            )
            row["hypervolume"], row["hv_source"] = value, "computed" if value is not None else ""
        row["last_update"] = r.updated_at
        row["objectives"] = ", ".join(
            f"{o} ({'max' if d == 'maximize' else 'min'})"
            for o, d in zip(spec.objectives, spec.directions, strict=True)
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
