"""The studies page: every study in the store, its state and how far its front has come."""

from __future__ import annotations

import streamlit as st

from paretune.spaces.numbers import format_hypervolume

from . import data
from .view_common import ago, run_page

STUDY_PAGE = "page_study.py"
LIVE_STATUSES = ("running", "stop-requested")


def _open_selected() -> None:
    state = st.session_state.get("studies_table")
    rows = getattr(getattr(state, "selection", None), "rows", None) or []
    names = st.session_state.get("_studies_names", [])
    if rows and rows[0] < len(names):
        st.session_state["_open_study"] = names[rows[0]]


def render(url: str) -> None:
    st.title("Studies")
    table = data.overview(url)
    if table.empty:
        st.info("This storage holds no studies yet. Start one with `paretune submit spec.yaml`.")
        return
    running = table[table["status"].isin(LIVE_STATUSES)]
    c1, c2, c3 = st.columns(3)
    c1.metric("Studies", len(table))
    c2.metric("Running", len(running))
    c3.metric("Trials", int(table["trials"].sum()))
    shown = table.copy()
    shown["last_update"] = [ago(t) for t in table["last_update"]]
    shown["hypervolume"] = [
        format_hypervolume(None if v != v else v) for v in table["hypervolume"]
    ]  # as the CLI writes it
    st.session_state["_studies_names"] = list(table["study"])
    st.dataframe(
        shown,
        hide_index=True,
        key="studies_table",
        on_select=_open_selected,
        selection_mode="single-row",
        column_config={
            "study": st.column_config.TextColumn("study", help="click a row to open the study"),
            "COMPLETE": st.column_config.NumberColumn("complete"),
            "PRUNED": st.column_config.NumberColumn("pruned"),
            "FAIL": st.column_config.NumberColumn("failed"),
            "RUNNING": st.column_config.NumberColumn("running"),
            "WAITING": st.column_config.NumberColumn("waiting"),
            "pareto_size": st.column_config.NumberColumn("Pareto size"),
            "hypervolume": st.column_config.TextColumn("hypervolume"),
            "hv_source": st.column_config.TextColumn(
                "HV", help="recorded by the driver, or computed here"
            ),
            "last_update": st.column_config.TextColumn("last update"),
        },
    )
    target = st.session_state.pop("_open_study", None)
    if target:
        st.switch_page(STUDY_PAGE, query_params={"study": target})
    st.caption("Open a study:")
    cols = st.columns(min(4, len(table)))
    for i, name in enumerate(table["study"]):
        cols[i % len(cols)].page_link(
            STUDY_PAGE, label=name, query_params={"study": name}, icon=":material/monitoring:"
        )


def page() -> None:
    run_page(render)
