"""Progress: hypervolume against time and compute; learning curves with rungs marked."""

from __future__ import annotations

import streamlit as st

from paretune.spaces.catalogue import OBJECTIVES

from . import data
from .charts import hypervolume_figure, learning_curves_figure
from .study_data import StudyData


def curve_groups(d: StudyData) -> dict[int, str]:
    """Trial number -> curve style: Pareto-optimal, COMPLETE, PRUNED, RUNNING or FAIL."""
    front = set(d.front)
    groups = {}
    for n, s in zip(d.trials["number"], d.trials["state"], strict=True):
        groups[int(n)] = (
            "Pareto-optimal"
            if n in front
            else (s if s in ("COMPLETE", "PRUNED", "RUNNING", "FAIL") else "FAIL")
        )
    return groups


def curve_metric(url: str, d: StudyData) -> str:
    """The metric the learning curves draw: the first measured objective, or any other metric
    the trials report (``eval_loss`` beside an SFT study's ``exact_match``, ...)."""
    primary = d.spec.primary_metric
    known = set(d.spec.objectives) - {primary}
    names = [n for n in data.metric_names(url, d.record.id) if n != primary]
    # measured objectives first, then the rest; a count known before training is no curve
    names = [n for n in names if not (n in OBJECTIVES and OBJECTIVES[n].known_before_training)]
    options = [primary] + sorted(names, key=lambda n: (n not in known, n))
    if len(options) == 1:
        return primary
    return str(st.selectbox("Learning curves of", options, index=0, key="curve_metric"))


def render(url: str, d: StudyData) -> None:
    st.subheader("Hypervolume")
    history = data.hypervolume_history(url, d.record.id)
    if history.empty:
        st.info("No hypervolume recorded yet: the driver records one after each COMPLETE trial.")
    else:
        c1, c2 = st.columns(2)
        c1.plotly_chart(hypervolume_figure(history, "time"), key="hv_time")
        c2.plotly_chart(hypervolume_figure(history, "compute_steps"), key="hv_compute")
        ref = d.reference
        if ref:
            st.caption("Reference point: " + ", ".join(f"{k} = {v:.4g}" for k, v in ref.items()))
    metric = curve_metric(url, d)
    st.subheader(f"Learning curves ({metric})")
    curves = data.curves(url, d.record.id, d.record.optuna_id, metric)
    if curves.empty:
        st.info(f"No {metric} reported yet.")
        return
    rungs = list(d.spec.rungs)
    st.caption(
        f"{curves['trial_number'].nunique()} trials, {len(curves)} points. Rungs (dotted) at steps "
        f"{', '.join(map(str, rungs))}: the scheduler stops trials there (PRUNED, dashed) or lets them go on."
    )
    st.plotly_chart(learning_curves_figure(curves, curve_groups(d), rungs, metric), key="curves")
