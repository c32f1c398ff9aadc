"""The study page: header with live status, then one tab per view (only the open tab runs)."""

from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from paretune.search.store.read import mask_url
from paretune.spaces.numbers import format_hypervolume

from . import data, tab_parameters, tab_pareto, tab_placement, tab_progress, tab_trial, tab_trials
from .study_data import StudyData
from .view_common import ago, guard, run_page
from .view_selection import TAB_KEY

TABS = ("Pareto front", "Progress", "Placement", "Parameters", "Trials", "Trial")
STALE_HEARTBEAT_S = 120.0
LIVE_STATUSES = ("running", "stop-requested")
STATUS_COLOURS = {
    "running": "green",
    "stop-requested": "orange",
    "created": "gray",
    "done": "blue",
    "finished": "blue",
    "stopped": "gray",
    "incomplete": "orange",
    "interrupted": "orange",
    "gave-up": "red",
    "failed": "red",
}


def _pick_study(url: str) -> str | None:
    names = data.study_names(url)
    wanted = st.query_params.get("study")
    if not names:
        st.info("This storage holds no studies yet. Start one with `paretune submit spec.yaml`.")
        return None
    if wanted is not None and wanted not in names:
        st.error(
            f"Unknown study {wanted!r} in {mask_url(url)}. Studies here: {', '.join(names[:20])}."
        )
        choice = st.selectbox("Open another study", names, index=None, placeholder="choose a study")
        if choice:
            st.query_params.clear()
            st.query_params["study"] = choice
            st.rerun()
        return None
    name = wanted or names[-1]
    choice = st.sidebar.selectbox("Study", names, index=names.index(name))
    if choice != name:
        st.query_params.clear()
        st.query_params["study"] = choice
        st.rerun()
    if wanted is None:
        st.query_params["study"] = name
    return name


def heartbeat_age(when: datetime | None) -> float | None:
    """Seconds since the driver's last heartbeat (naive UTC), None without one."""
    if when is None:
        return None
    return (datetime.now(timezone.utc).replace(tzinfo=None) - when).total_seconds()


def _header(d: StudyData, live: bool) -> None:
    r = d.record
    states = d.states
    colour = STATUS_COLOURS.get(r.status, "gray")
    st.title(r.name)
    objectives = ", ".join(
        f"{o} ({'max' if dr == 'maximize' else 'min'})" for o, dr in d.directions.items()
    )
    st.markdown(
        f":{colour}-badge[{r.status}] &nbsp; objectives: {objectives} &nbsp; · &nbsp; last update {ago(r.updated_at)}"
    )
    done = sum(v for k, v in states.items() if k in ("COMPLETE", "PRUNED", "FAIL"))
    cols = st.columns(7)
    cols[0].metric(
        f"Trials (of {r.n_trials})" if r.n_trials else "Trials",
        len(d.trials),
        help=f"{done} finished; the budget is {r.n_trials} trials",
    )
    cols[1].metric("Complete", states.get("COMPLETE", 0))
    cols[2].metric("Pruned", states.get("PRUNED", 0))
    cols[3].metric("Failed", states.get("FAIL", 0))
    cols[4].metric("Running", d.n_running)
    cols[5].metric("Pareto size", len(d.front))
    cols[6].metric(
        "Hypervolume",
        format_hypervolume(d.hypervolume),
        help=f"{d.hypervolume_source or 'none yet'}",
    )
    if live:
        stale = heartbeat_age(r.heartbeat_at)
        if stale is None or stale > STALE_HEARTBEAT_S:
            st.warning(
                f"The driver's heartbeat is {ago(r.heartbeat_at) if r.heartbeat_at else 'missing'}: it may have "
                f"stopped. `paretune resume {r.name}` picks the study up again.",
                icon=":material/heart_broken:",
            )
        host = f" on {r.driver_host}" if r.driver_host else ""
        st.info(
            f"Live: {d.n_running} trial{'s' if d.n_running != 1 else ''} running{host}; "
            f"this page refreshes every {data.REFRESH_S:.0f} s (driver heartbeat {ago(r.heartbeat_at)}).",
            icon=":material/sensors:",
        )


def _body(url: str, name: str, live: bool) -> None:
    d = data.study(url, name)
    if d is None:
        st.error(f"Unknown study {name!r} in {mask_url(url)}.")
        return
    if live and d.record.status not in LIVE_STATUSES:
        st.rerun()  # the study ended: leave live mode
    _header(d, live)
    if d.trials.empty:
        st.info(
            f"Study {name!r} has no trials yet ({d.record.status}). They appear here as the driver starts them."
        )
        return
    tabs = st.tabs(list(TABS), key=TAB_KEY, bind="query-params")
    renderers = (
        tab_pareto.render,
        tab_progress.render,
        tab_placement.render,
        tab_parameters.render,
        tab_trials.render,
        tab_trial.render,
    )
    for tab, render in zip(tabs, renderers, strict=True):
        if tab.open:
            with tab:
                render(url, d)


@st.fragment(run_every=data.REFRESH_S)
def _live(url: str, name: str) -> None:
    guard(url, _body, url, name, True)


@st.fragment
def _still(url: str, name: str) -> None:
    guard(url, _body, url, name, False)


def render(url: str) -> None:
    name = _pick_study(url)
    if name is None:
        return
    d = data.study(url, name)
    if d is None:
        st.error(f"Unknown study {name!r} in {mask_url(url)}.")
        return
    (_live if d.record.status in LIVE_STATUSES else _still)(url, name)


def page() -> None:
    run_page(render)
