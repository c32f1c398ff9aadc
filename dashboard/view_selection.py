"""The selected trial lives in the URL (``?trial=N``): clicks on charts and tables set it and
switch to the Trial tab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from .analysis import trial_from_selection

TAB_KEY = "tab"
TRIAL_TAB = "Trial"


def selected_trial() -> int | None:
    raw = st.query_params.get("trial")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def open_trial(number: int) -> None:
    """Select a trial and show the Trial tab (call from a widget callback)."""
    st.query_params["trial"] = str(int(number))
    st.session_state[TAB_KEY] = TRIAL_TAB
    st.session_state.pop("trial_pick", None)


def on_chart_pick(key: str) -> Callable[[], None]:
    """Callback for ``st.plotly_chart(on_select=...)``: open the first clicked trial."""

    def callback() -> None:
        state: Any = st.session_state.get(key)
        number = trial_from_selection(
            getattr(state, "selection", None) if state is not None else None
        )
        if number is not None:
            open_trial(number)

    return callback


def on_table_pick(key: str, numbers: list[int]) -> Callable[[], None]:
    """Callback for ``st.dataframe(on_select=...)``: open the trial of the selected row."""

    def callback() -> None:
        state: Any = st.session_state.get(key)
        rows = getattr(getattr(state, "selection", None), "rows", None) or []
        if rows and rows[0] < len(numbers):
            open_trial(numbers[rows[0]])

    return callback
