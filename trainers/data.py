"""The data registry: load a task's labelled texts, split them, tokenise them (cached on disk).

Sources, chosen by ``task.dataset``:

- ``vader-movies``, ``vader-tweets``, ``vader-amazon``, ``vader-nyt``: the VADER sentiment ground
  truth (see :mod:`paretune.trainers.datasets_vader`), labelled negative / positive;
- ``synthetic``: a generated, learnable data set for tests (see :mod:`paretune.trainers.synthetic`);
- a path to a ``.csv``, ``.jsonl`` or ``.json`` (JSON lines) file with the columns named by
  ``task.text_field`` and ``task.label_field``.

Every mistake raises one line of :class:`~paretune.spaces.errors.DataError`. The tokenised splits
are cached under :func:`cache_dir`, keyed by the tokenizer, the split contents and ``max_length``;
the tokenizer is passed in, so this module imports neither torch nor transformers.

Example::

    from transformers import AutoTokenizer
    from paretune.spaces import TaskSpec
    from paretune.spaces.models import minilm_dir
    from paretune.trainers.data import prepare_data

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    data = prepare_data(TaskSpec(dataset="vader-tweets", max_length=64), tok, "minilm-l6")
    print(len(data.train), data.label_names, data.train.input_ids[0][:8])
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretune.spaces.errors import DataError
from paretune.spaces.models import cache_root
from paretune.spaces.spec import TaskSpec

from . import synthetic
from .datasets_vader import LABEL_NAMES as VADER_LABELS
from .datasets_vader import VADER_FILES, load_vader

log = logging.getLogger(__name__)

BUILTIN_DATASETS = (*VADER_FILES, "synthetic")
FILE_SUFFIXES = (".csv", ".jsonl", ".json")
TOKENIZED_VERSION = 1
TOKENIZE_BATCH = 1024
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with label indices into ``label_names``; ``source_key`` changes when the data does."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    source_key: str

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test subsets of one :class:`LabelledTexts`."""

    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.train.label_names

    @property
    def key(self) -> str:
        """Stable hash of the three splits' contents."""
        return _digest([self.train.source_key, self.validation.source_key, self.test.source_key])


@dataclass(frozen=True)
class TokenizedSplit:
    """One split as token ids (truncated, not padded) and label indices."""

    input_ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TokenizedSplits:
    """The tokenised train, validation and test splits and the label set."""

    train: TokenizedSplit
    validation: TokenizedSplit
    test: TokenizedSplit
    num_labels: int
    label_names: tuple[str, ...]
    key: str


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """paretune's cache: ``$PARETUNE_CACHE`` or ``~/.cache/paretune``."""
    return cache_root()


def _resolve_cache(directory: str | Path | None) -> Path:
    return Path(directory).expanduser() if directory is not None else cache_dir()


def _digest(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# ----------------------------------------------------------------------------- loading


def load_dataset(task: TaskSpec, cache_dir: str | Path | None = None) -> LabelledTexts:
    """The labelled texts of ``task.dataset``: a built-in set or a local CSV / JSONL file."""
    name = task.dataset
    if name in VADER_FILES:
        texts, labels = load_vader(name, _resolve_cache(cache_dir))
        data = _labelled(name, texts, labels, VADER_LABELS)
    elif name == "synthetic":
        data = _load_synthetic(task)
    elif name.lower().endswith(FILE_SUFFIXES):
        texts, raw = _read_file(Path(name).expanduser(), task.text_field, task.label_field)
        labels, names = _index_labels(raw)
        data = _labelled("file", texts, labels, names)
    else:
        raise DataError(
            f"unknown data set {name!r}; use {', '.join(BUILTIN_DATASETS[:-1])}, "
            f"{BUILTIN_DATASETS[-1]}, or a path to a .csv/.jsonl file"
        )
    return _checked(data, task)


def _labelled(
    prefix: str, texts: Sequence[str], labels: Sequence[int], names: Sequence[str]
) -> LabelledTexts:
    texts, labels, names = tuple(texts), tuple(labels), tuple(names)
    key = f"{prefix}:{_digest([names, labels, texts])}"
    return LabelledTexts(texts=texts, labels=labels, label_names=names, source_key=key)


def _load_synthetic(task: TaskSpec) -> LabelledTexts:
    k = task.num_labels or 2
    if k > synthetic.MAX_LABELS:
        raise DataError(
            f"synthetic data supports at most {synthetic.MAX_LABELS} labels, got num_labels {k}"
        )
    texts, labels = synthetic.generate(task.synthetic_size, k, task.seed)
    return _labelled("synthetic", texts, labels, [f"class_{i}" for i in range(k)])


def _checked(data: LabelledTexts, task: TaskSpec) -> LabelledTexts:
    """Refuse an empty set, a single class, or a label count that contradicts task.num_labels."""
    if not data.texts:
        raise DataError(f"data set {task.dataset!r} has no examples")
    found = sorted({data.label_names[i] for i in data.labels})
    if len(found) < 2:
        raise DataError(
            f"data set {task.dataset!r} has only one label ({found[0]!r}); "
            "a classifier needs at least 2 classes"
        )
    n = len(data.label_names)
    if task.num_labels is not None and task.num_labels != n:
        raise DataError(
            f"task.num_labels is {task.num_labels} but data set {task.dataset!r} has {n} labels "
            f"({', '.join(data.label_names)}); leave num_labels unset or make it {n}"
        )
    return data


# ----------------------------------------------------------------------------- local files


def _read_file(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[Any]]:
    """Texts and raw label values of a local CSV or JSON-lines file."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    texts: list[str] = []
    labels: list[Any] = []
    try:
        if path.suffix.lower() == ".csv":
            records = _csv_records(path, text_field, label_field)
        else:
            records = _json_records(path)
        for where, record in records:
            text, label = _fields(record, where, path, text_field, label_field)
            texts.append(text)
            labels.append(label)
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read {path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    return texts, labels


def _csv_records(path: Path, text_field: str, label_field: str) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            columns = reader.fieldnames or []
            missing = [c for c in (text_field, label_field) if c not in columns]
            if missing:
                raise DataError(
                    f"{path} has no column {missing[0]!r}; its columns are: "
                    f"{', '.join(columns) or '(none)'}; set task.text_field / task.label_field"
                )
            for row in reader:
                if None in row or None in row.values():
                    raise DataError(
                        f"malformed CSV at line {reader.line_num} of {path}: "
                        + _row_problem(row, len(columns))
                    )
                yield f"line {reader.line_num}", row
        except csv.Error as e:
            raise DataError(f"malformed CSV at line {reader.line_num} of {path}: {e}") from None


def _row_problem(row: dict, n_columns: int) -> str:
    if None in row:
        return f"more fields than the {n_columns} of the header (quote texts that hold commas)"
    return f"fewer fields than the {n_columns} of the header"


def _json_records(path: Path) -> Iterator[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        yield from _json_array(text, path)
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON at line {lineno} of {path}: {e.msg}") from None


def _json_array(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON at line {e.lineno} of {path}: {e.msg}") from None
    for i, item in enumerate(items, start=1):
        yield f"item {i}", item


def _fields(
    record: Any, where: str, path: Path, text_field: str, label_field: str
) -> tuple[str, Any]:
    """The text and the raw label of one record, checked."""
    if not isinstance(record, dict):
        raise DataError(f"{where} of {path} is not a JSON object")
    for field in (text_field, label_field):
        if field not in record:
            raise DataError(
                f"{where} of {path} has no field {field!r}; its fields are: "
                f"{', '.join(map(str, record)) or '(none)'}; set task.text_field / task.label_field"
            )
    text, label = record[text_field], record[label_field]
    if not isinstance(text, str):
        raise DataError(f"{where} of {path}: {text_field!r} must be a string, got {text!r}")
    if label is None or isinstance(label, (dict, list)) or str(label).strip() == "":
        raise DataError(
            f"{where} of {path}: {label_field!r} must be a string or integer, got {label!r}"
        )
    return text, label


def _label_key(value: Any) -> int | str:
    """A label value as an int where it is one (1, "1", 1.0), else as a stripped string."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if _INT.fullmatch(text) else text


def _index_labels(raw: Sequence[Any]) -> tuple[list[int], list[str]]:
    """Label indices in the sorted order of the distinct values, and those values as names."""
    keys = [_label_key(v) for v in raw]
    distinct = set(keys)
    if all(isinstance(k, int) for k in distinct):
        order: list[Any] = sorted(distinct)
    else:
        order = sorted(distinct, key=str)
    index = {k: i for i, k in enumerate(order)}
    return [index[k] for k in keys], [str(k) for k in order]


# ----------------------------------------------------------------------------- splitting


def split_dataset(data: LabelledTexts, task: TaskSpec) -> DataSplits:
    """Shuffle with ``task.seed``; take test, then validation, then train (capped by train_size)."""
    n = len(data)
    n_test = _split_count(task.test_size, n, "test_size")
    n_val = _split_count(task.val_size, n, "val_size")
    if n_val < 1 or n - n_test - n_val < 1:
        raise DataError(
            f"data set {task.dataset!r} has {n} examples, too few for val_size {task.val_size:g} "
            f"and test_size {task.test_size:g}: it needs at least one training and one validation example"
        )
    order = list(range(n))
    random.Random(f"paretune-split:{task.seed}").shuffle(order)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if task.train_size is not None:
        train = train[: task.train_size]
    return DataSplits(
        train=_subset(data, train, "train"),
        validation=_subset(data, val, "validation"),
        test=_subset(data, test, "test"),
    )


def _split_count(size: float, n: int, field: str) -> int:
    """A fraction (< 1) of ``n``, at least one unless zero; or a whole count (>= 1)."""
    if size < 1:
        return max(1, round(size * n)) if size > 0 else 0
    if not float(size).is_integer():
        raise DataError(f"task.{field} {size:g} is neither a fraction below 1 nor a whole count")
    return int(size)


def _subset(data: LabelledTexts, indices: list[int], name: str) -> LabelledTexts:
    return LabelledTexts(
        texts=tuple(data.texts[i] for i in indices),
        labels=tuple(data.labels[i] for i in indices),
        label_names=data.label_names,
        source_key=f"{name}:{_digest([data.source_key, name, indices])}",
    )


# ----------------------------------------------------------------------------- tokenising


def tokenize_splits(
    splits: DataSplits,
    tokenizer: Any,
    tokenizer_key: str,
    max_length: int,
    cache_dir: str | Path | None = None,
) -> TokenizedSplits:
    """Token ids of every split, from the disk cache when the same work was done before."""
    key = _digest([TOKENIZED_VERSION, tokenizer_key, splits.key, max_length])
    path = _resolve_cache(cache_dir) / "tokenized" / f"{key}.json"
    cached = _read_cached(path, key)
    if cached is not None:
        log.info("tokenised data from cache %s", path)
        return cached
    log.info("tokenising %s examples (max_length %d)", _count(splits), max_length)
    result = TokenizedSplits(
        train=_tokenize(splits.train, tokenizer, max_length),
        validation=_tokenize(splits.validation, tokenizer, max_length),
        test=_tokenize(splits.test, tokenizer, max_length),
        num_labels=len(splits.label_names),
        label_names=splits.label_names,
        key=key,
    )
    _write_cached(path, result)
    return result


def prepare_data(
    task: TaskSpec, tokenizer: Any, tokenizer_key: str, cache_dir: str | Path | None = None
) -> TokenizedSplits:
    """Load, split and tokenise the task's data (tokenised splits cached on disk)."""
    data = load_dataset(task, cache_dir)
    splits = split_dataset(data, task)
    return tokenize_splits(splits, tokenizer, tokenizer_key, task.max_length, cache_dir)


def _count(splits: DataSplits) -> int:
    return len(splits.train) + len(splits.validation) + len(splits.test)


def _tokenize(split: LabelledTexts, tokenizer: Any, max_length: int) -> TokenizedSplit:
    ids: list[list[int]] = []
    texts = list(split.texts)
    for start in range(0, len(texts), TOKENIZE_BATCH):
        batch = texts[start : start + TOKENIZE_BATCH]
        encoded = tokenizer(batch, truncation=True, max_length=max_length)
        ids.extend([int(t) for t in seq[:max_length]] for seq in encoded["input_ids"])
    return TokenizedSplit(input_ids=ids, labels=list(split.labels))


def _read_cached(path: Path, key: str) -> TokenizedSplits | None:
    """The cached splits at ``path``, or None when absent, stale or unreadable."""
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable tokenised cache %s: %s", path, e)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    try:
        parts = {
            name: _split_from(blob["splits"][name]) for name in ("train", "validation", "test")
        }
        names = tuple(blob["label_names"])
        return TokenizedSplits(**parts, num_labels=blob["num_labels"], label_names=names, key=key)
    except (KeyError, TypeError) as e:
        log.warning("ignoring malformed tokenised cache %s: %s", path, e)
        return None


def _split_from(blob: dict[str, Any]) -> TokenizedSplit:
    return TokenizedSplit(input_ids=blob["input_ids"], labels=blob["labels"])


def _write_cached(path: Path, result: TokenizedSplits) -> None:
    """Write atomically, so concurrent workers never read half a file."""
    splits = {"train": result.train, "validation": result.validation, "test": result.test}
    blob = {
        "version": TOKENIZED_VERSION,
        "key": result.key,
        "num_labels": result.num_labels,
        "label_names": list(result.label_names),
        "splits": {n: {"input_ids": s.input_ids, "labels": s.labels} for n, s in splits.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(blob, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
