"""Live progress of a running study: a thread-safe state the searcher updates, and its rich view.

The searcher calls :meth:`ProgressState.refresh` with the study's trials whenever a trial starts
or ends; the CLI draws :func:`render` a few times a second from another thread (``rich.live``).
Nothing here touches the database, so drawing costs nothing on the study store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from paretune.search.service.consoles import stderr_console
from paretune.spaces.numbers import format_hypervolume


@dataclass(frozen=True)
class ProgressSnapshot:
    """What the progress view shows, at one moment."""

    study: str = ""
    budget: int = 0
    used: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    rejected: int = 0
    pareto_size: int = 0
    hypervolume: float | None = None
    best: dict[str, float] = field(default_factory=dict)
    best_trial: dict[str, int] = field(default_factory=dict)  # which trial holds each best
    directions: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    message: str = ""


class ProgressState:
    """Counters of one study, updated by the searcher and read by the progress view."""

    def __init__(self, study: str = "") -> None:
        self._lock = threading.Lock()
        self._snap = ProgressSnapshot(study=study)

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return self._snap

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._snap = replace(self._snap, **fields)

    def refresh(
        self,
        trials: Sequence[Any],
        *,
        budget: int,
        used: int,
        objectives: Sequence[str],
        directions: Sequence[str],
        pareto_size: int,
        hypervolume: float | None = None,
    ) -> None:
        """Recount everything from the study's trials (cheap: a few hundred trials at most)."""
        from optuna.trial import TrialState  # noqa: PLC0415

        counts = {s: 0 for s in TrialState}
        rejected = 0
        best: dict[str, float] = {}
        best_trial: dict[str, int] = {}
        for t in trials:
            if t.user_attrs.get("rejected"):
                rejected += 1
                continue
            counts[t.state] += 1
            if t.state == TrialState.COMPLETE and t.values:
                for name, d, v in zip(objectives, directions, t.values, strict=True):
                    if name not in best or (v > best[name] if d == "maximize" else v < best[name]):
                        best[name], best_trial[name] = float(v), t.number
        fields: dict[str, Any] = {
            "budget": budget,
            "used": used,
            "complete": counts[TrialState.COMPLETE],
            "pruned": counts[TrialState.PRUNED],
            "failed": counts[TrialState.FAIL],
            "running": counts[TrialState.RUNNING],
            "waiting": counts[TrialState.WAITING],
            "rejected": rejected,
            "pareto_size": pareto_size,
            "best": best,
            "best_trial": best_trial,
            "directions": dict(zip(objectives, directions, strict=True)),
        }
        if hypervolume is not None:
            fields["hypervolume"] = hypervolume
        self.update(**fields)


def format_value(name: str, value: float | None) -> str:
    """Objective values as people read them: counts with separators, fractions with 4 digits."""
    if value is None:
        return "-"
    if name == "trainable_params":
        return f"{int(round(value)):,}"
    if name == "peak_memory_mb":
        return f"{value:.1f} MB"
    if name == "train_seconds":
        return f"{value:.1f} s"
    return f"{value:.4f}"


def status_line(snap: ProgressSnapshot) -> Text:
    """The counters of the study on one line."""
    elapsed = time.monotonic() - snap.started
    return Text.assemble(
        (f"{snap.study} ", "bold"),
        f"trials {snap.used}/{snap.budget}  ",
        (f"complete {snap.complete}", "green"),
        "  ",
        (f"running {snap.running}", "cyan"),
        f"  pruned {snap.pruned}  ",
        (f"failed {snap.failed}", "red" if snap.failed else ""),
        f"  rejected {snap.rejected}  pareto {snap.pareto_size}",
        f"  hv {format_hypervolume(snap.hypervolume)}" if snap.hypervolume is not None else "",
        f"  {elapsed:.0f}s",
    )


def _trial_of(snap: ProgressSnapshot, name: str) -> str:
    number = snap.best_trial.get(name)
    return "" if number is None else f"#{number}"


def render(snap: ProgressSnapshot) -> Group:
    """The live view: the status line and the best value of each objective, with the trial
    that reached it (each objective's best is usually a different trial)."""
    line = status_line(snap)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("objective")
    table.add_column("direction")
    table.add_column("best", justify="right")
    table.add_column("trial", justify="right")
    for name, direction in snap.directions.items():
        table.add_row(
            name, direction, format_value(name, snap.best.get(name)), _trial_of(snap, name)
        )
    parts: list[Any] = [line, table]
    if snap.message:
        parts.append(Text(snap.message, style="yellow"))
    return Group(*parts)


def plain_line(snap: ProgressSnapshot) -> str:
    """The status line and the best value of each objective with its trial, as plain text for
    a log: ``best per objective: accuracy 0.8080 (#6), trainable_params 22,274 (#10)``."""
    best = ", ".join(
        f"{name} {format_value(name, snap.best[name])}"
        + (f" ({_trial_of(snap, name)})" if name in snap.best_trial else "")
        for name in snap.directions
        if name in snap.best
    )
    return status_line(snap).plain + (f"  best per objective: {best}" if best else "")


def _counters(snap: ProgressSnapshot) -> ProgressSnapshot:
    """What a new log line is written for: everything but the clock."""
    return replace(snap, started=0.0)


@contextmanager
def live_progress(
    state: ProgressState,
    console: Console | None = None,
    *,
    poll_seconds: float = 1.0,
    min_gap_seconds: float = 10.0,
) -> Iterator[None]:
    """Redraw the progress view twice a second while the block runs. Off a terminal (a log
    file, a pipe, a batch job) write a plain line instead whenever the counters change, at most
    one per ``min_gap_seconds``, and the last state when the block ends."""
    console = console or stderr_console()
    if console.is_terminal:
        with Live(
            console=console,
            refresh_per_second=2,
            transient=False,
            get_renderable=lambda: render(state.snapshot()),
        ):
            yield
        return
    done = threading.Event()
    written: ProgressSnapshot | None = None

    def write(snap: ProgressSnapshot) -> None:
        nonlocal written
        written = _counters(snap)
        console.file.write(plain_line(snap) + "\n")
        console.file.flush()

    def loop() -> None:
        last = float("-inf")
        while not done.wait(poll_seconds):
            snap = state.snapshot()
            if snap.budget and _counters(snap) != written:
                if time.monotonic() - last >= min_gap_seconds:
                    write(snap)
                    last = time.monotonic()

    thread = threading.Thread(target=loop, name="paretune-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        snap = state.snapshot()
        if snap.budget and _counters(snap) != written:
            write(snap)
