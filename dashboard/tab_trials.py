"""The trials table: filter by state, sort, download as CSV; a click opens the trial."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from . import data
from .study_data import StudyData
from .view_selection import on_table_pick

TABLE_KEY = "trials_table"


def trials_table(d: StudyData, last: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: state, objectives, how far it trained, its plan, timing."""
    t = d.trials
    out = pd.DataFrame({"number": t["number"].astype(int), "state": t["state"]})
    out["pareto"] = out["number"].isin(set(d.front))
    for o in d.objectives:
        out[o] = t[o].to_numpy()
    metric = d.spec.primary_metric
    if len(last):
        lookup = last.set_index("trial_number")
        out["last_step"] = out["number"].map(lookup["last_step"])
        out[f"last {metric}"] = out["number"].map(lookup["last_value"])
    if "trainable_params" not in d.objectives:
        out["trainable_params"] = t["trainable_params"].to_numpy()
    out["feasible"] = t["feasible"].to_numpy()
    out["summary"] = t["summary"].to_numpy()
    for p in d.hyperparameters():
        out[p] = out["number"].map(d.params[p]) if p in d.params.columns else None
    out["duration_s"] = t["duration_s"].round(1).to_numpy()
    out["start"] = t["start"].to_numpy()
    return out


def filter_and_sort(
    table: pd.DataFrame, states: list[str], sort_by: str, descending: bool
) -> pd.DataFrame:
    out = table[table["state"].isin(states)]
    if sort_by in out.columns:
        out = out.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    return out.reset_index(drop=True)


def render(url: str, d: StudyData) -> None:
    last = data.last_values(url, d.record.id, d.spec.primary_metric)
    table = trials_table(d, last)
    present = [
        s
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
        if (table["state"] == s).any()
    ]
    c1, c2, c3 = st.columns([3, 2, 1])
    states = c1.multiselect("State", present, default=present, key="state_filter")
    sort_by = c2.selectbox("Sort by", list(table.columns), index=0, key="sort_by")
    descending = c3.toggle("Descending", value=False, key="sort_desc")
    shown = filter_and_sort(table, states, sort_by, descending)
    st.caption(f"{len(shown)} of {len(table)} trials. Select a row to open the trial.")
    st.dataframe(
        shown,
        hide_index=True,
        key=TABLE_KEY,
        on_select=on_table_pick(TABLE_KEY, [int(n) for n in shown["number"]]),
        selection_mode="single-row",
        height=420,
    )
    st.download_button(
        "Download CSV",
        shown.to_csv(index=False).encode(),
        file_name=f"{d.record.name}-trials.csv",
        mime="text/csv",
        key="download_trials",
        on_click="ignore",
    )
