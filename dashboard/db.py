"""Read-only connections to the study store.

The dashboard never writes: a SQLite file is opened with ``mode=ro`` (a missing file is an error,
never a new empty database), and PostgreSQL sessions start with ``default_transaction_read_only``.
No table is ever created. Every message that can reach the page has the password masked.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from paretune.search.store.read import (
    ENV_STORAGE,
    StorageError,
    mask_text,
    mask_url,
    resolve_storage,
)

CONNECT_TIMEOUT_S = 5
# a page cache and memory-mapped reads big enough for a large study's metrics: the learning-curve
# query touches rows spread over the whole table, several times over with SQLite's default 2 MiB
SQLITE_READ_PRAGMAS = ("PRAGMA cache_size = -65536", "PRAGMA mmap_size = 268435456")


class DashboardError(Exception):
    """A problem the page shows as one clear line (password already masked)."""


def storage_url() -> str:
    """The storage URL the dashboard reads: ``$PARETUNE_STORAGE``, else the default SQLite file."""
    try:
        return resolve_storage(os.environ.get(ENV_STORAGE))
    except StorageError as e:
        raise DashboardError(str(e)) from None


def sqlite_path(url: str) -> str | None:
    """The absolute file path of a ``sqlite:///`` URL, None for other databases."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return os.path.abspath(path)


def readonly_engine(url: str) -> Engine:
    """An engine that can only read ``url``; raises DashboardError for a missing SQLite file."""
    masked = mask_url(url)
    path = sqlite_path(url)
    try:
        if path is not None:
            if not os.path.isfile(path):
                raise DashboardError(f"cannot open storage {masked}: no such database file")

            def connect() -> sqlite3.Connection:
                uri = f"file:{quote(path)}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
                for pragma in SQLITE_READ_PRAGMAS:  # connection settings: nothing is written
                    conn.execute(pragma)
                return conn

            return create_engine(url, creator=connect)
        kwargs: dict[str, Any] = {
            "pool_pre_ping": True,
            "pool_recycle": 300,
            "connect_args": {
                "connect_timeout": CONNECT_TIMEOUT_S,
                "options": "-c default_transaction_read_only=on",
            },
        }
        return create_engine(url, **kwargs)
    except DashboardError:
        raise
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise DashboardError(f"malformed storage URL {masked}: {mask_text(e, url)}") from None


def explain(error: BaseException, url: str) -> str:
    """One line for the page: what failed, with the database password masked."""
    masked = mask_url(url)
    if isinstance(error, DashboardError):
        return mask_text(str(error), url)
    orig = getattr(error, "orig", None)
    reason = str(orig if orig is not None else error).strip().splitlines()
    first = reason[0] if reason else type(error).__name__
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        return f"storage {masked} holds no paretune studies (no paretune tables)"
    if isinstance(error, SQLAlchemyError | OSError | sqlite3.Error):
        return f"cannot read storage {masked}: {mask_text(first, url)}"
    return mask_text(f"{type(error).__name__}: {first}", url)
