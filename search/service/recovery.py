"""Trials that Ray restarts after their worker or node died (``search.max_failures``).

Ray Tune retries such a trial itself (``tune.FailureConfig``); this callback writes what happened
to the study's event log: one ``trial_retried`` event per restart with Ray's error text, and a
``node_lost`` event when the node that ran the trial (from its ``trial_running`` event) is dead
in Ray's node table, or the error says so. Ray may take a few seconds to declare a node dead:
the callback waits up to :data:`NODE_DEAD_WAIT_S` for it when the error looks like a lost
connection. The trial keeps its
Optuna number; the restarted run reports its steps again and the searcher ignores the steps it
stored already, so the trial ends exactly once (COMPLETE, PRUNED or FAIL when retries run out).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from paretune.search.service.searcher import SearchCore
from paretune.search.service.trainable import TRIAL_KEY

log = logging.getLogger(__name__)

NODE_DIED_MARKERS = ("node has died", "node died", "nodediederror", "raylet died", "node_died")
LOST_CONNECTION_MARKERS = ("actorunavailableerror", "actordiederror", "socket closed", "rpc error")
NODE_DEAD_WAIT_S = 10.0


def error_text(trial: Any, limit: int = 4000) -> str | None:
    """The tail of Ray's error file of a trial, if any."""
    try:
        if trial.error_file:
            with open(trial.error_file) as f:
                return f.read()[-limit:].strip() or None
    except OSError:
        pass
    return None


def node_died(text: str | None) -> bool:
    lowered = (text or "").lower()
    return any(marker in lowered for marker in NODE_DIED_MARKERS)


def trial_node(core: SearchCore, number: int) -> str | None:
    """The Ray node id of the last run of a trial, from its ``trial_running`` events."""
    events = core.store.events(core.ctx.study_id, trial_number=number, kinds=["trial_running"])
    nodes = [e["detail"].get("node_id") for e in events if e["detail"].get("node_id")]
    return nodes[-1] if nodes else None


def node_is_dead(node_id: str | None, wait_s: float) -> bool:
    """True when Ray's node table says ``node_id`` is dead (polled up to ``wait_s``)."""
    if not node_id:
        return False
    import ray  # noqa: PLC0415

    deadline = time.monotonic() + wait_s
    while True:
        alive = {n.get("NodeID"): n.get("Alive") for n in ray.nodes()}
        if alive.get(node_id) is False:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def make_retry_callback(core: SearchCore) -> Any:
    """A Tune callback that logs each restart of a trial (see the module docstring)."""
    return _retry_callback_class()(core)


@functools.cache
def _retry_callback_class() -> type:
    from ray.tune import Callback  # noqa: PLC0415

    class TrialRetryLog(Callback):
        def __init__(self, core: SearchCore) -> None:
            self.core: SearchCore | None = core

        def on_trial_recover(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            core = self.core
            if core is None or TRIAL_KEY not in (trial.config or {}):
                return
            number = int(trial.config[TRIAL_KEY])
            text = error_text(trial)
            detail: dict[str, Any] = {
                "ray_trial_id": trial.trial_id,
                "failures": int(getattr(trial.run_metadata, "num_failures", 0)),
                "max_failures": core.spec.search.max_failures,
                "error": text,
            }
            try:
                with core._lock:
                    live = core.live.get(number)
                    if live is not None:
                        live.seen = False  # the restarted run logs its new node
                node = trial_node(core, number)
                detail["node_id"] = node
                lowered = (text or "").lower()
                maybe = any(m in lowered for m in LOST_CONNECTION_MARKERS)
                if node_died(text) or node_is_dead(node, NODE_DEAD_WAIT_S if maybe else 0.0):
                    core.store.log_event(core.ctx.study_id, "node_lost", detail, number)
                core.store.log_event(core.ctx.study_id, "trial_retried", detail, number)
            except Exception:  # the event log is a by-product; never stop Tune over it
                log.warning("could not log the retry of trial %s", number, exc_info=True)

        def __getstate__(self) -> dict[str, Any]:
            return {"core": None}

    return TrialRetryLog
