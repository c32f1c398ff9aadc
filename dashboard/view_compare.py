"""Compare: the Pareto fronts of two or more studies, overlaid on objectives they share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from paretune.search.store.read import hypervolume, min_form_array, pareto_mask

from . import data
from .analysis import fallback_reference
from .charts import compare_figure
from .study_data import StudyData
from .view_common import run_page


def common_objectives(studies: list[StudyData]) -> list[str]:
    """Objectives every study has with the same direction, in the first study's order."""
    if not studies:
        return []
    first = studies[0].directions
    return [o for o, dr in first.items() if all(s.directions.get(o) == dr for s in studies[1:])]


def comparison_table(
    points: dict[str, pd.DataFrame], x: str, y: str, directions: dict[str, str]
) -> pd.DataFrame:
    """Per study: COMPLETE trials, front size and hypervolume on (x, y) with one shared reference."""
    dirs = [directions[x], directions[y]]
    mins = {
        n: min_form_array(p[[x, y]].to_numpy(dtype=float), dirs)
        for n, p in points.items()
        if len(p)
    }
    if not mins:
        return pd.DataFrame(columns=["study", "complete", "front size", "hypervolume"])
    ref = fallback_reference(np.vstack(list(mins.values())))
    rows = []
    for name, p in points.items():
        pts = mins.get(name, np.zeros((0, 2)))
        front = pts[pareto_mask(pts)] if len(pts) else pts
        rows.append(
            {
                "study": name,
                "complete": len(p),
                "front size": len(front),
                "hypervolume": hypervolume(front.tolist(), ref) if len(front) else 0.0,
            }
        )
    return pd.DataFrame(rows)


def render(url: str) -> None:
    st.title("Compare studies")
    names = data.study_names(url)
    if len(names) < 2:
        st.info("Comparing needs at least two studies in this storage.")
        return
    table = data.overview(url)
    with_front = list(table.loc[table["COMPLETE"] > 0, "study"])
    wanted = [n for n in st.query_params.get_all("studies") if n in names] or (
        with_front[-2:] if len(with_front) >= 2 else names[-2:]
    )
    chosen = st.multiselect("Studies", names, default=wanted, key="compare_studies")
    st.query_params["studies"] = chosen
    if len(chosen) < 2:
        st.info("Choose two or more studies.")
        return
    studies = [d for d in (data.study(url, n) for n in chosen) if d is not None]
    common = common_objectives(studies)
    if len(common) < 2:
        st.warning(
            "These studies share fewer than two objectives (with the same direction): nothing to overlay."
        )
        return
    directions = studies[0].directions
    c1, c2 = st.columns(2)
    x = c1.selectbox("x axis", common, index=1, key="compare_x")
    y = c2.selectbox("y axis", common, index=0, key="compare_y")
    if x == y:
        st.warning("Choose two different objectives for the axes.")
        return
    points: dict[str, pd.DataFrame] = {}
    for d in studies:
        c = d.complete()
        points[d.record.name] = c[c["feasible"].astype(bool)][
            ["number", x, y, "hover"]
        ].reset_index(drop=True)
    st.caption(
        "Each study's feasible COMPLETE trials (faded) and its front on these two objectives (step line)."
    )
    st.plotly_chart(compare_figure(points, x, y, directions), key="compare_chart")
    st.dataframe(comparison_table(points, x, y, directions), hide_index=True, key="compare_table")
    st.caption(
        "Hypervolume on these two objectives against one reference point shared by the studies (nadir + 10% of the range)."
    )


def page() -> None:
    run_page(render)
