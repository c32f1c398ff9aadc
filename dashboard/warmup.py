"""Warm-up at server start: the slow first-time work, done in a background thread.

``optuna.importance`` pulls in scikit-learn (over a second to import), and plotly builds its
validators the first time a trace type is used. Doing both once per process, in a daemon thread
started by the app, spares the first visitor of the Parameters tab and of each chart the wait.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_started = threading.Event()


def _work() -> None:
    try:
        import optuna.importance  # noqa: F401, PLC0415
        import plotly.graph_objects as go  # noqa: PLC0415

        go.Figure(
            [
                go.Scatter(x=[0], y=[0]),
                go.Scattergl(x=[0], y=[0]),
                go.Heatmap(z=[[0]]),
                go.Parcoords(dimensions=[{"values": [0], "label": "x"}]),
                go.Bar(x=[0], y=["a"], orientation="h"),
            ]
        ).to_json()
    except Exception:  # noqa: BLE001 - a warm-up must never break the app
        log.debug("dashboard warm-up failed", exc_info=True)


def start() -> None:
    """Start the warm-up thread, once per process."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_work, name="paretune-warmup", daemon=True).start()
