"""What every page shares: the storage URL, friendly failures, small formatters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import streamlit as st

from paretune.search.store.read import mask_url

from .db import DashboardError, explain, storage_url

log = logging.getLogger(__name__)


def current_url() -> str | None:
    """The storage URL, or None after showing why it cannot be used."""
    try:
        return storage_url()
    except DashboardError as e:
        st.error(str(e))
        return None


def guard(url: str, render: Callable[..., None], *args: Any) -> None:
    """Run ``render(*args)``; a failure becomes one clear line on the page, never a traceback.

    Streamlit's own control flow (rerun, switch_page, stop) is not an Exception and passes.
    """
    try:
        render(*args)
    except Exception as e:  # noqa: BLE001 - the page shows a message, the log keeps the traceback
        log.warning(
            "dashboard page failed: %s", explain(e, url), exc_info=not isinstance(e, DashboardError)
        )
        st.error(explain(e, url))


def run_page(render: Callable[[str], None]) -> None:
    """Run a page against the storage URL, failures shown as messages."""
    url = current_url()
    if url is None:
        return
    st.sidebar.caption(f"Storage: `{mask_url(url)}`")
    guard(url, render, url)


def ago(when: datetime | None) -> str:
    """'42 s ago', '3 min ago', '5 h ago', or the date (times are naive UTC)."""
    if when is None:
        return "-"
    seconds = (datetime.now(timezone.utc).replace(tzinfo=None) - when).total_seconds()
    if seconds < 0:
        return when.strftime("%Y-%m-%d %H:%M UTC")
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return when.strftime("%Y-%m-%d %H:%M UTC")


def fmt(value: object) -> str:
    """Numbers with 4 significant digits; large ones compact (208.7k, 1.04M)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        v = float(value)
        if v != v:
            return "-"
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
            if abs(v) >= scale:
                return f"{v / (scale if suffix != 'k' else 1e3):.4g}{suffix}"
        return f"{v:.4g}"
    return str(value)
