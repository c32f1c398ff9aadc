"""One driver at a time asks a study for a trial: the budget check and the ask are atomic.

Drivers that share a study (``paretune resume NAME --join``) each check the budget and then ask
Optuna for a trial. Without a lock two of them may both see one trial left and both ask. The
searcher holds :func:`ask_lock` around "count the trials, ask one", so the count the next driver
makes already includes the trial the previous one asked:

- PostgreSQL: a transaction-scoped advisory lock keyed by the study (``pg_advisory_xact_lock``),
  held on a connection of paretune's own engine while Optuna asks on its connection. An advisory
  lock rather than ``SELECT ... FOR UPDATE`` on the study row: the heartbeat and the metric writes
  update that row and must not queue behind an ask.
- SQLite (one host by nature): an exclusive ``flock`` on ``<database>.ask-lock`` beside the file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The first key of the two-key advisory lock: paretune's namespace ("PT" in ASCII).
ADVISORY_NAMESPACE = 0x5054


@contextmanager
def ask_lock(store: Any, study_id: int) -> Iterator[None]:
    """Hold the study's ask lock (see the module docstring); re-entrant use is not supported."""
    url: str = store.url
    if url.startswith("postgresql"):
        with _postgres_lock(store, study_id):
            yield
    elif url.startswith("sqlite:///") and url[len("sqlite:///") :] not in ("", ":memory:"):
        with _file_lock(url[len("sqlite:///") :] + ".ask-lock"):
            yield
    else:
        yield


@contextmanager
def _postgres_lock(store: Any, study_id: int) -> Iterator[None]:
    from sqlalchemy import text  # noqa: PLC0415

    with store.engine.connect() as conn:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :id)"),
            {"ns": ADVISORY_NAMESPACE, "id": int(study_id)},
        )
        try:
            yield
        finally:
            conn.rollback()  # ends the transaction, which releases the lock


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
