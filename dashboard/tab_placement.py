"""Placement map: where Pareto-optimal configurations put adapters, and how big."""

from __future__ import annotations

import streamlit as st

from . import data
from .charts import placement_figure
from .study_data import StudyData

CHOICES = ("Pareto-optimal trials", "All COMPLETE trials")


def render(url: str, d: StudyData) -> None:
    if d.record.optuna_id is None or d.complete().empty:
        st.info(
            "No COMPLETE trial yet: the placement map shows where good configurations put adapters."
        )
        return
    which = st.radio("Plans of", CHOICES, horizontal=True, key="placement_of")
    numbers = (
        tuple(d.front) if which == CHOICES[0] else tuple(int(n) for n in d.complete()["number"])
    )
    table = data.placement(url, d.record.optuna_id, numbers)
    if table.empty:
        st.info("These trials carry no placement in their plan (no per-layer adapters).")
        return
    st.caption(
        f"Share of the {len(numbers)} {which.lower()} that place an adapter at each layer and module "
        "(colour), and its mean size there (text: LoRA rank, bottleneck size, ...)."
    )
    st.plotly_chart(placement_figure(table, len(numbers)), key="placement_map")
    with st.expander("Table"):
        st.dataframe(table, hide_index=True)
