"""Pareto front scatter: two objectives chosen by the user, a third as colour; click opens a trial."""

from __future__ import annotations

import streamlit as st

from .charts import pareto_figure
from .study_data import StudyData
from .view_selection import on_chart_pick, selected_trial

CHART_KEY = "pareto_chart"
NO_COLOUR = "(none)"


def default_axes(objectives: tuple[str, ...]) -> tuple[str, str]:
    """Cost on x (the second objective, e.g. trainable_params), quality on y (the first)."""
    if len(objectives) >= 2:
        return objectives[1], objectives[0]
    return objectives[0], objectives[0]


def render(url: str, d: StudyData) -> None:
    objectives = d.objectives
    complete = d.complete()
    if complete.empty:
        st.info(
            "No COMPLETE trial yet: the front appears once a trial is trained to full fidelity."
        )
        return
    if len(objectives) < 2:
        st.info(f"Single-objective study: the best trial(s) on {objectives[0]} are its front.")
    dx, dy = default_axes(objectives)
    c1, c2, c3 = st.columns(3)
    x = c1.selectbox("x axis", objectives, index=objectives.index(dx), key="x_axis")
    y = c2.selectbox("y axis", objectives, index=objectives.index(dy), key="y_axis")
    others = [o for o in objectives if o not in (x, y)]
    colour = c3.selectbox(
        "colour", [NO_COLOUR, *others], index=1 if others else 0, key="colour_axis"
    )
    if x == y and len(objectives) > 1:
        st.warning("Choose two different objectives for the axes.")
    fig = pareto_figure(
        complete,
        x,
        y,
        d.directions,
        d.front,
        color=None if colour == NO_COLOUR else colour,
        selected=selected_trial(),
    )
    n_infeasible = int((~complete["feasible"].astype(bool)).sum())
    st.caption(
        f"{len(complete)} COMPLETE trials; **{len(d.front)} on the Pareto front** over all "
        f"{len(objectives)} objectives (bold, joined by the step line), dominated trials faded"
        + (f", {n_infeasible} infeasible (x)" if n_infeasible else "")
        + ". Hover for the plan and hyperparameters; click a point to open the trial."
    )
    st.plotly_chart(
        fig,
        key=CHART_KEY,
        on_select=on_chart_pick(CHART_KEY),
        selection_mode="points",
        config={"displaylogo": False},
    )
    front = d.trials[d.trials["number"].isin(set(d.front))]
    columns = ["number", *objectives, "summary"]
    st.subheader(f"Pareto-optimal trials ({len(front)})")
    st.dataframe(
        front[columns].sort_values(list(objectives[:1])), hide_index=True, key="front_table"
    )
