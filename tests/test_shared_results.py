"""SharedResults: other drivers' results, each delivered once, late commits included."""

from __future__ import annotations

from typing import Any

from paretune.search.service.shared_results import SharedResults


class Rows:
    """A metrics table: rows become visible when committed, in any id order."""

    def __init__(self) -> None:
        self.visible: list[dict[str, Any]] = []
        self.reads: list[int] = []

    def commit(self, row_id: int, trial: int, step: int, **metrics: float) -> None:
        for i, (name, value) in enumerate(metrics.items()):
            self.visible.append(
                {
                    "id": row_id + i,
                    "trial_number": trial,
                    "step": step,
                    "name": name,
                    "value": value,
                }
            )

    def metrics_after(self, study_id: int, after_id: int) -> list[dict[str, Any]]:
        self.reads.append(after_id)
        return sorted((r for r in self.visible if r["id"] > after_id), key=lambda r: r["id"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shared(rows: Rows, clock: Clock, start_id: int = 0) -> SharedResults:
    return SharedResults(rows, 1, start_id, min_interval_s=2.0, grace_s=60.0, clock=clock)


def test_results_of_other_trials_arrive_whole_and_once() -> None:
    rows, clock = Rows(), Clock()
    feed = shared(rows, clock)
    got: list[Any] = []
    feed.subscribe(got.extend)
    feed.own(5)
    rows.commit(1, trial=3, step=10, accuracy=0.7, eval_loss=0.4)
    rows.commit(3, trial=5, step=10, accuracy=0.9, eval_loss=0.2)  # this driver's own trial
    assert feed.poll(force=True) == [(3, 10, {"accuracy": 0.7, "eval_loss": 0.4})]
    assert got == [(3, 10, {"accuracy": 0.7, "eval_loss": 0.4})]
    clock.now += 5
    assert feed.poll() == []  # nothing new: nothing delivered twice
    assert got == [(3, 10, {"accuracy": 0.7, "eval_loss": 0.4})]


def test_rows_before_the_start_are_not_read() -> None:
    rows, clock = Rows(), Clock()
    rows.commit(1, trial=0, step=10, accuracy=0.5)  # in the history the driver started with
    feed = shared(rows, clock, start_id=1)
    assert feed.poll(force=True) == []
    assert rows.reads == [1]


def test_a_row_committed_after_higher_ids_is_still_delivered() -> None:
    rows, clock = Rows(), Clock()
    feed = shared(rows, clock)
    rows.commit(2, trial=1, step=10, accuracy=0.6)  # id 1 is still in an open transaction
    assert feed.poll(force=True) == [(1, 10, {"accuracy": 0.6})]
    clock.now += 30
    rows.commit(1, trial=0, step=10, accuracy=0.8)  # commits late, below the highest id seen
    assert feed.poll(force=True) == [(0, 10, {"accuracy": 0.8})]
    assert rows.reads == [0, 0]  # the watermark waits grace_s before passing id 2


def test_the_watermark_follows_after_the_grace_period() -> None:
    rows, clock = Rows(), Clock()
    feed = shared(rows, clock)
    rows.commit(1, trial=0, step=10, accuracy=0.8)
    feed.poll(force=True)
    clock.now += 61
    feed.poll(force=True)
    clock.now += 1
    rows.commit(2, trial=1, step=10, accuracy=0.6)
    assert feed.poll(force=True) == [(1, 10, {"accuracy": 0.6})]
    assert rows.reads == [0, 0, 1]  # rows up to id 1 are no longer read


def test_polls_are_rate_limited_unless_forced() -> None:
    rows, clock = Rows(), Clock()
    feed = shared(rows, clock)
    feed.poll()
    rows.commit(1, trial=0, step=10, accuracy=0.8)
    clock.now += 1
    assert feed.poll() == []  # within min_interval_s: the store is not read
    assert len(rows.reads) == 1
    assert feed.poll(force=True) == [(0, 10, {"accuracy": 0.8})]
    clock.now += 2.5
    rows.commit(2, trial=1, step=10, accuracy=0.6)
    assert feed.poll() == [(1, 10, {"accuracy": 0.6})]
