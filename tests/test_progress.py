"""Progress of a running study off a terminal: plain lines in the log, not silence."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

from rich.console import Console

from paretune.search.service.progress import ProgressState, live_progress, plain_line, render


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False), out


def wait_for(out: io.StringIO, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.getvalue():
        assert time.monotonic() < deadline, f"{text!r} never written: {out.getvalue()!r}"
        time.sleep(0.01)


def test_a_log_gets_a_line_per_change_with_counters_and_best_values():
    console, out = log_console()
    state = ProgressState("qs")
    with live_progress(state, console, poll_seconds=0.01, min_gap_seconds=0.0):
        time.sleep(0.05)  # nothing known yet: nothing written
        assert out.getvalue() == ""
        state.update(budget=12, used=1, running=1, directions={"accuracy": "maximize"})
        wait_for(out, "trials 1/12")
        time.sleep(0.1)  # unchanged counters: no second line
        state.update(used=2, complete=1, running=1, pareto_size=1, best={"accuracy": 0.8})
        wait_for(out, "trials 2/12")
        state.update(used=2, complete=2, running=0, pareto_size=2, best={"accuracy": 0.81})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("qs trials 1/12  complete 0  running 1")
    assert "best per objective: accuracy 0.8000" in lines[1] and "pareto 1" in lines[1]
    assert "complete 2" in lines[2] and "accuracy 0.8100" in lines[2]  # the end state


def test_each_best_value_names_the_trial_that_reached_it():
    """The best accuracy and the fewest parameters are usually different trials: the line must
    not read as if one trial had both."""
    from optuna.trial import TrialState  # noqa: PLC0415

    def trial(number, values, state=TrialState.COMPLETE, **attrs):
        return SimpleNamespace(number=number, values=values, state=state, user_attrs=attrs)

    state = ProgressState("front")
    state.refresh(
        [
            trial(0, [0.81, 52994.0]),
            trial(1, [0.78, 22274.0]),
            trial(2, [0.99, 10.0], rejected=True),  # never trained: counts for nothing
            trial(3, None, TrialState.PRUNED),
        ],
        budget=4,
        used=4,
        objectives=["accuracy", "trainable_params"],
        directions=["maximize", "minimize"],
        pareto_size=2,
    )
    snap = state.snapshot()
    line = plain_line(snap)
    assert "best per objective: accuracy 0.8100 (#0), trainable_params 22,274 (#1)" in line
    assert "complete 2" in line and "pruned 1" in line and "rejected 1" in line
    out = io.StringIO()
    Console(file=out, width=100).print(render(snap))
    rows = {r.split()[0]: r.split() for r in out.getvalue().splitlines() if r.strip()}
    assert rows["accuracy"][-2:] == ["0.8100", "#0"]
    assert rows["trainable_params"][-2:] == ["22,274", "#1"]


def test_a_busy_study_is_throttled_and_its_last_state_written_at_the_end():
    console, out = log_console()
    state = ProgressState("busy")
    with live_progress(state, console, poll_seconds=0.01, min_gap_seconds=60.0):
        for used in range(1, 30):
            state.update(budget=100, used=used)
            time.sleep(0.005)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first change, then the end state
    assert "trials 29/100" in lines[-1]


def test_a_terminal_gets_the_live_view():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    state = ProgressState("tty")
    with live_progress(state, console, poll_seconds=0.01, min_gap_seconds=0.0):
        state.update(budget=4, used=1, directions={"accuracy": "maximize"})
        time.sleep(0.6)
    assert "trials 1/4" in out.getvalue()
    assert "\x1b[" in out.getvalue()  # drawn with the terminal's control codes
