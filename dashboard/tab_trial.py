"""One trial: its plan, parameters, metrics, events, failure traceback, the export command and
the seeds ``paretune export --retrain`` trained again."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from paretune.search.store.read import DEFAULT_STORAGE, RETRAINED
from paretune.spaces import TEST_METRICS, with_test_metrics

from . import data
from .analysis import export_command
from .study_data import StudyData
from .view_common import fmt
from .view_selection import selected_trial


def _pick(d: StudyData) -> int:
    numbers = [int(n) for n in d.trials["number"]]
    states = dict(zip(numbers, d.trials["state"], strict=True))
    current = selected_trial()
    if current not in states:
        current = d.front[0] if d.front else numbers[-1]
    front = set(d.front)

    def label(n: int) -> str:
        return f"trial {n} ({states[n]}{', Pareto-optimal' if n in front else ''})"

    def changed() -> None:
        st.query_params["trial"] = str(st.session_state["trial_pick"])

    return int(
        st.selectbox(
            "Trial",
            numbers,
            index=numbers.index(current),
            format_func=label,
            key="trial_pick",
            on_change=changed,
        )
    )


def _traceback(attrs: dict[str, Any], events: pd.DataFrame) -> str | None:
    if attrs.get("traceback"):
        return str(attrs["traceback"])
    if len(events):
        for detail in events.loc[events["kind"] == "trial_failed", "detail"]:
            if isinstance(detail, dict) and detail.get("traceback"):
                return str(detail["traceback"])
    return None


def rejection_message(events: pd.DataFrame) -> str:
    for detail in events.loc[events["kind"] == "rejected", "detail"] if len(events) else []:
        if isinstance(detail, dict) and "trainable_params" in detail:
            limit = detail.get("max_trainable_params")
            return (
                f"Rejected before training: {detail['trainable_params']:,} trainable parameters"
                + (f", over max_trainable_params = {limit:,}." if limit else ".")
            )
    return "Rejected before training: the plan broke a constraint known in advance."


def retrained_runs(events: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """One row per seed ``paretune export --retrain`` trained: seed, steps, each objective and,
    beside them, the test split's figures."""
    names = with_test_metrics(objectives)
    names += [n for n in TEST_METRICS.values() if n not in names]
    rows = []
    if not events.empty:
        for detail in events.loc[events["kind"] == RETRAINED, "detail"]:
            detail = detail or {}
            metrics = detail.get("metrics", {})
            row: dict[str, Any] = {"seed": detail.get("seed"), "steps": detail.get("steps")}
            row.update({n: metrics[n] for n in names if n in metrics})
            rows.append(row)
    return pd.DataFrame(rows)


def render(url: str, d: StudyData) -> None:
    number = _pick(d)
    row = d.trials[d.trials["number"] == number].iloc[0]
    detail = data.trial_detail(url, d.record.id, d.record.optuna_id, number)
    attrs: dict[str, Any] = detail["attrs"]
    metrics: pd.DataFrame = detail["metrics"]
    events: pd.DataFrame = detail["events"]
    state = str(row["state"])
    st.subheader(
        f"Trial {number}: {state}" + (" · Pareto-optimal" if number in set(d.front) else "")
    )
    if row["summary"]:
        st.markdown(f"**Plan:** {row['summary']}")
    cols = st.columns(len(d.objectives) + 2)
    for c, o in zip(cols, d.objectives, strict=False):
        c.metric(o, fmt(row[o]))
    cols[-2].metric(
        "Duration", f"{row['duration_s']:.0f} s" if pd.notna(row["duration_s"]) else "-"
    )
    cols[-1].metric("Feasible", "yes" if row["feasible"] else "no")
    if state == "FAIL":
        tb = _traceback(attrs, events)
        if attrs.get("rejected"):
            st.warning(rejection_message(events))
        elif attrs.get("interrupted"):
            st.warning("Interrupted: the driver stopped while this trial ran; resume re-queues it.")
        if tb:
            st.markdown("**Failure traceback**")
            st.code(tb, language="text")
    if state == "COMPLETE":
        cmd, note = export_command(d.record.name, number, url, DEFAULT_STORAGE)
        st.markdown("**Export this configuration as a trained adapter:**")
        st.code(cmd, language="bash")
        if note:
            st.caption(note)
        runs = retrained_runs(events, list(d.objectives))
        if not runs.empty:
            st.markdown(
                "**Retrained** with `paretune export --retrain`; the `test_` columns are the"
                " held-out test split, which no trial of the search read"
            )
            st.dataframe(runs, hide_index=True)
    left, right = st.columns(2)
    with left:
        st.markdown("**Plan**")
        st.json(attrs.get("plan") or {}, expanded=2)
        st.markdown("**Parameters**")
        params = d.params.loc[number] if number in d.params.index else pd.Series(dtype=object)
        st.dataframe(
            pd.DataFrame({"parameter": params.index, "value": [fmt(v) for v in params.to_numpy()]}),
            hide_index=True,
        )
    with right:
        st.markdown("**Metrics per step**")
        if metrics.empty:
            st.caption("No metrics reported.")
        else:
            st.dataframe(metrics, hide_index=True)
        st.markdown("**Events**")
        if events.empty:
            st.caption("No events.")
        else:
            shown = events.copy()
            shown["detail"] = shown["detail"].map(
                lambda v: json.dumps(v, default=str) if v is not None else ""
            )
            st.dataframe(shown, hide_index=True)
    other = {k: v for k, v in attrs.items() if k not in ("plan", "traceback", "summary")}
    if other:
        with st.expander("User attributes"):
            st.json(other, expanded=True)
