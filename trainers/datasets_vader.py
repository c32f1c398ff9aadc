"""The VADER sentiment ground truth: four built-in, offline-after-first-use data sets.

C.J. Hutto and Eric Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of
Social Media Text", ICWSM 2014; MIT licence. The ground-truth files ship inside the source archive
of ``vaderSentiment`` 3.3.2 on PyPI (``additional_resources/hutto_ICWSM_2014.tar.gz``). The archive
is fetched once with pip, checked against its PyPI sha256, and the four files are kept in the cache.
Each line is ``id <TAB> mean rating <TAB> text``; a row's label is the sign of its mean rating
and rows rated exactly zero are dropped.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

from paretune.spaces.errors import DataError

from .pypi_files import release_file, write_atomic

log = logging.getLogger(__name__)

PACKAGE = "vaderSentiment==3.3.2"
ARCHIVE = "vaderSentiment-3.3.2.tar.gz"
ARCHIVE_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_DIR = "hutto_ICWSM_2014"
DOWNLOAD_TIMEOUT_S = 300.0

VADER_FILES: dict[str, str] = {
    "vader-movies": "movieReviewSnippets_GroundTruth.txt",
    "vader-tweets": "tweets_GroundTruth.txt",
    "vader-amazon": "amazonReviewSnippets_GroundTruth.txt",
    "vader-nyt": "nytEditorialSnippets_GroundTruth.txt",
}
LABEL_NAMES = ("negative", "positive")


def load_vader(name: str, root: Path) -> tuple[list[str], list[int]]:
    """Texts and labels (0 negative, 1 positive) of the VADER set ``name``, zero ratings dropped."""
    path = root / "vader" / VADER_FILES[name]
    if not path.exists():
        _extract_all(_archive(root), path.parent)
    return parse_ground_truth(path)


def parse_ground_truth(path: Path) -> tuple[list[str], list[int]]:
    """Read one ``id<TAB>rating<TAB>text`` file; the label is the sign of the rating."""
    texts: list[str] = []
    labels: list[int] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rating, text = _parse_line(line, path, lineno)
        if rating != 0:
            texts.append(text)
            labels.append(1 if rating > 0 else 0)
    return texts, labels


def _parse_line(line: str, path: Path, lineno: int) -> tuple[float, str]:
    parts = line.split("\t", 2)
    try:
        return float(parts[1]), parts[2].strip()
    except (IndexError, ValueError):
        raise DataError(
            f"malformed line {lineno} in {path}: expected id<TAB>rating<TAB>text; "
            "delete the file to extract it again"
        ) from None


def _archive(root: Path) -> Path:
    """The verified vaderSentiment sdist in ``root/downloads``, downloaded with pip if absent."""
    return release_file(
        PACKAGE,
        ARCHIVE,
        ARCHIVE_SHA256,
        root / "downloads",
        sdist=True,
        what="the VADER data sets",
        error=DataError,
    )


def _extract_all(archive: Path, dest: Path) -> None:
    """Copy the four ground-truth files out of the nested archive (read in memory, no paths)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as outer:
            inner_file = outer.extractfile(INNER)
            if inner_file is None:
                raise KeyError(INNER)
            with tarfile.open(fileobj=inner_file, mode="r:gz") as inner:
                for filename in VADER_FILES.values():
                    member = inner.extractfile(f"{INNER_DIR}/{filename}")
                    if member is None:
                        raise KeyError(filename)
                    write_atomic(dest / filename, member.read())
    except (KeyError, tarfile.TarError, OSError) as e:
        raise DataError(f"cannot read the VADER ground truth from {archive}: {e}") from None
