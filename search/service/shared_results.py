"""Results that other drivers of the same study store while this one runs.

Drivers sharing a study (``paretune resume NAME --join``) each run their own trials. For the
rung models of ``search.sampler_fidelity`` and for the scheduler's rungs to hold every result, as
they would with one driver, each driver polls the metrics table for the results of trials it does
not run: :meth:`SharedResults.poll` reads the rows stored since the last poll and hands the new
complete results, ``(trial_number, step, {metric: value})``, to every subscriber.

Row ids are handed out when a row is inserted, not when its transaction commits, so a row can
become visible after rows with higher ids. The watermark (rows above it are read) therefore only
moves up to the highest id a poll saw at least ``grace_s`` ago, and results already delivered are
remembered until the watermark passes them: a late row is still delivered, once. One result's
metrics are inserted in one transaction, so a result is never delivered in part.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Result = tuple[int, int, dict[str, float]]
Subscriber = Callable[[Sequence[Result]], object]


class SharedResults:
    """Polls ``store`` for the results of study ``study_id`` stored after row ``start_id``."""

    def __init__(
        self,
        store: Any,
        study_id: int,
        start_id: int,
        *,
        min_interval_s: float = 2.0,
        grace_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.study_id = study_id
        self.min_interval_s = min_interval_s
        self.grace_s = grace_s
        self.clock = clock
        self.watermark = int(start_id)
        self._seen_ids: list[tuple[float, int]] = []  # (poll time, highest id that poll saw)
        self._delivered: dict[tuple[int, int], int] = {}  # (trial, step) -> its highest row id
        self._own: set[int] = set()
        self._subscribers: list[Subscriber] = []
        self._last_poll = -float("inf")
        self._lock = threading.Lock()

    def own(self, number: int) -> None:
        """Trial ``number`` runs in this driver: its results arrive here, never by polling."""
        with self._lock:
            self._own.add(int(number))

    def subscribe(self, fn: Subscriber) -> None:
        """``fn(results)`` receives every batch of new results (outside this object's lock)."""
        with self._lock:
            self._subscribers.append(fn)

    def poll(self, force: bool = False) -> list[Result]:
        """Read the results stored since the last poll and pass them on; returns them.

        Without ``force`` a poll within ``min_interval_s`` of the previous one reads nothing.
        """
        with self._lock:
            now = self.clock()
            if not force and now - self._last_poll < self.min_interval_s:
                return []
            self._last_poll = now
            rows = self.store.metrics_after(self.study_id, self.watermark)
            fresh: dict[tuple[int, int], dict[str, float]] = {}
            top = self.watermark
            for row in rows:
                top = max(top, row["id"])
                key = (row["trial_number"], row["step"])
                if key[0] in self._own or key in self._delivered:  # delivered by an earlier poll
                    continue
                fresh.setdefault(key, {})[row["name"]] = row["value"]
            for key in fresh:  # a result's rows are committed together: it is whole here
                self._delivered[key] = top
            self._advance(now, top)
            results = [(n, s, m) for (n, s), m in sorted(fresh.items())]
            subscribers = list(self._subscribers)
        if results:
            log.debug("%d results from other drivers of study %d", len(results), self.study_id)
            for fn in subscribers:
                fn(results)
        return results

    def _advance(self, now: float, top: int) -> None:
        """Move the watermark to the highest id seen ``grace_s`` ago; forget what it passed."""
        self._seen_ids.append((now, top))
        while self._seen_ids and now - self._seen_ids[0][0] >= self.grace_s:
            self.watermark = max(self.watermark, self._seen_ids.pop(0)[1])
        self._delivered = {k: i for k, i in self._delivered.items() if i > self.watermark}
