"""Parallel coordinates of hyperparameters and objectives; parameter importance per objective."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from . import data
from .charts import importance_figure, parallel_figure
from .importance import MAX_TRIALS, TooFewTrials
from .study_data import StudyData

MAX_AXES = 10


def is_log(distribution_json: str | None) -> bool:
    try:
        return bool(json.loads(distribution_json or "{}").get("attributes", {}).get("log"))
    except ValueError:
        return False


def parallel_frame(d: StudyData) -> pd.DataFrame:
    """COMPLETE trials: hyperparameters, placement totals, objectives (in that order)."""
    complete = d.complete()
    params = d.params.reindex(complete["number"])
    out = pd.DataFrame(index=params.index)
    placement = d.placement_params()
    if placement:
        sizes = params[placement].apply(pd.to_numeric, errors="coerce").fillna(0)
        out["adapted modules"] = (sizes > 0).sum(axis=1)
        out["total size"] = sizes.sum(axis=1)
    for p in d.hyperparameters()[: MAX_AXES - len(out.columns)]:
        if params[p].astype(str).nunique() > 1:
            if is_log(d.distributions.get(p)):
                out[f"log10({p})"] = np.log10(pd.to_numeric(params[p], errors="coerce"))
            else:
                out[p] = params[p]
    for o in d.objectives:
        out[o] = complete[o].to_numpy()
    return out.reset_index(drop=True)


def render(url: str, d: StudyData) -> None:
    complete = d.complete()
    if complete.empty:
        st.info("No COMPLETE trial yet.")
        return
    st.subheader("Parallel coordinates")
    colour = st.selectbox("colour by", d.objectives, key="parallel_colour")
    frame = parallel_frame(d)
    st.caption(f"{len(frame)} COMPLETE trials. Drag along an axis to filter.")
    st.plotly_chart(parallel_figure(frame, colour, d.directions[colour]), key="parallel")
    st.subheader("Parameter importance")
    try:
        imp = data.importances(url, d.record.name, len(complete))
    except TooFewTrials as e:
        message = str(e)
        st.info(message[:1].upper() + message[1:] + ".")
        return
    sample = f" (a random sample of {MAX_TRIALS})" if len(complete) > MAX_TRIALS else ""
    st.caption(
        f"optuna.importance.get_param_importances on the COMPLETE trials{sample}, one objective at a "
        "time (PED-ANOVA: how much each parameter matters for reaching the best values)."
    )
    st.plotly_chart(importance_figure(imp), key="importance")
