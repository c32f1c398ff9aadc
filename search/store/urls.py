"""Storage URLs: defaults, validation and password masking."""

from __future__ import annotations

import os
import re

from paretune.spaces.errors import UserError

DEFAULT_STORAGE = "sqlite:///paretune.db"
ENV_STORAGE = "PARETUNE_STORAGE"
ENV_STORAGE_FILE = "PARETUNE_STORAGE_FILE"  # a file holding the storage URL (a Ray Job's)
STORAGE_HELP = (
    "Study store URL: sqlite:///PATH.db or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    f" (default: ${ENV_STORAGE}, else {DEFAULT_STORAGE})."
)
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")


class StorageError(UserError):
    """The storage URL is malformed, unreachable, or holds a database paretune cannot use."""


def mask_url(url: str) -> str:
    """``postgresql+psycopg://user:secret@host/db`` -> ``postgresql+psycopg://user:***@host/db``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def mask_text(text: str, url: str | None) -> str:
    """Remove a URL's password from any text (error messages quote URLs)."""
    out = str(text)
    if url:
        m = re.search(r"://[^:/@]*:([^@]*)@", url)
        if m and m.group(1):
            out = out.replace(m.group(1), "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", out)


def resolve_storage(url: str | None) -> str:
    """The URL to use: the argument, else ``$PARETUNE_STORAGE``, else a SQLite file here."""
    url = url or os.environ.get(ENV_STORAGE) or DEFAULT_STORAGE
    url = url.strip()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "postgresql":
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
        scheme = "postgresql+psycopg"
    if scheme not in _SCHEMES:
        raise StorageError(
            f"malformed storage URL {mask_url(url)!r}: use sqlite:///PATH.db or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
        )
    rest = url.split("://", 1)[1]
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise StorageError(
                f"malformed storage URL {url!r}: a SQLite URL reads sqlite:///relative.db or sqlite:////abs.db"
            )
    elif "/" not in rest or not rest.split("/", 1)[1] or not rest.split("/", 1)[0]:
        raise StorageError(
            f"malformed storage URL {mask_url(url)!r}: it needs a host and a database name"
        )
    return url


def storage_from_file() -> str | None:
    """The URL in ``$PARETUNE_STORAGE_FILE`` (a job's working directory holds it), if set."""
    path = os.environ.get(ENV_STORAGE_FILE)
    if not path:
        return None
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError as e:
        raise UserError(f"${ENV_STORAGE_FILE} names {path}, which cannot be read: {e}") from None
