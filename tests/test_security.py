"""Security rules: passwords never leave the storage URL; specs are read with a safe YAML loader;
remote model code runs only when the spec asks (and the CLI warns); SQL takes values only as
SQLAlchemy parameters.
"""

from __future__ import annotations

import ast
import logging
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text

from paretune.search.cli import study as cli_study
from paretune.search.store.study_store import open_store
from paretune.search.store.urls import mask_text, mask_url
from paretune.spaces import load_spec, parse_spec
from paretune.spaces.errors import SpecError
from paretune.spaces.models import ModelSource, resolve_model

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_input import (  # noqa: E402
    assert_one_error_line,
    finished_study,
    run_cli,
    spec_data,
)

REPO = Path(__file__).resolve().parents[1]
SECRET = "Sup3rS3cretPw"


def quick(spec: Any, config: Any, reporter: Any, *, max_steps: int, eval_steps: list[int], trial_dir: Any = None) -> dict[str, float]:  # fmt: skip
    metrics: dict[str, float] = {}
    for step in eval_steps:
        metrics = {"accuracy": 0.5 + step / 100, "eval_loss": 0.5}
        if not reporter(step, metrics):
            break
    return metrics


# -- passwords ---------------------------------------------------------------------------------


def test_mask_url_and_mask_text():
    url = f"postgresql+psycopg://alice:{SECRET}@db.example:5432/studies"
    assert mask_url(url) == "postgresql+psycopg://alice:***@db.example:5432/studies"
    assert SECRET not in mask_text(f"failed: {url} (password {SECRET})", url)
    assert SECRET not in mask_text(f"see postgresql://bob:{SECRET}@h/db", None)


def dump_tables(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                repr(list(conn.execute(text(f'SELECT * FROM "{t}"'))))  # names from the schema
                for t in inspect(conn).get_table_names()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_password_never_appears_in_output_logs_rows_or_files(
    postgres_url, ray_session, tmp_path, monkeypatch, capsys, caplog
):
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in url  # trust authentication: any password is accepted
    monkeypatch.setattr(cli_study, "TRIAL_FN", quick)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    data = spec_data("secure")
    data["storage"] = url  # the spec names the store too: its text is kept with the study
    data["search"]["n_trials"] = 2
    data["artifacts"] = str(tmp_path / "runs")
    spec = tmp_path / "secure.yaml"
    spec.write_text(f"# store: {url}\n" + yaml.safe_dump(data, sort_keys=False))
    seen = []
    code, out, err = run_cli(monkeypatch, capsys, "submit", str(spec))
    assert code == 0, err
    assert "postgres:***@" in err
    seen.append(out + err)
    for argv in (
        ["status"],
        ["status", "secure"],
        ["status", "secure", "--format", "json"],
        ["pareto", "secure", "--format", "csv"],
        ["studies", "--format", "json"],
    ):
        code, out, err = run_cli(monkeypatch, capsys, *argv, "--storage", url)
        assert code == 0, (argv, err)
        seen.append(out + err)
    bad_host = url.rsplit("@", 1)[0] + "@127.0.0.1:1/x"
    missing_db = url.rsplit("/", 1)[0] + "/no_such_database_here"
    for argv, expected in (
        (["status", "nope", "--storage", url], "unknown study 'nope'"),
        (["pareto", "nope", "--storage", url], "unknown study 'nope'"),
        (["studies", "--storage", bad_host], "cannot reach storage"),
        (["status", "--storage", missing_db], "does not exist"),
        (["studies", "--storage", f"mysql://u:{SECRET}@h/db"], "malformed storage URL"),
        (["status", "--storage", f"postgresql://u:{SECRET}@h"], "malformed storage URL"),
        (["submit", str(spec), "--storage", url], "already exists"),
    ):
        code, out, err = run_cli(monkeypatch, capsys, *argv)
        assert_one_error_line(code, out, err, expected)
        assert "***" in err
        seen.append(out + err)
    for text_seen in seen:
        assert SECRET not in text_seen
    assert SECRET not in caplog.text
    store = open_store(url)
    assert store.get_study("secure").status == "done"
    assert "postgres:***@" in store.get_study("secure").spec_yaml
    store.dispose()
    assert SECRET not in dump_tables(postgres_url)
    for f in (tmp_path / "runs").rglob("*"):  # Ray's files: configs, results, logs
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_a_sqlite_study_keeps_no_password_from_its_spec(tmp_path):
    data = spec_data("quiet")
    data["storage"] = f"postgresql://alice:{SECRET}@db.example/studies"
    loaded = parse_spec(yaml.safe_dump(data), "quiet.yaml")
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    from paretune.search.service import lifecycle as service

    try:
        service.prepare_submit(store, loaded)
        assert "alice:***@db.example" in store.get_study("quiet").spec_yaml
        assert "storage" not in store.get_study("quiet").spec  # canonical JSON drops it
    finally:
        store.optuna_storage().engine.dispose()
        store.dispose()
    assert SECRET not in dump_tables(url)


# -- YAML --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "study: !!python/object/apply:os.system ['touch {marker}']\n",
        "study: x\nspace: !!python/object/new:os.system ['touch {marker}']\n",
        "study: !!python/name:os.system\n",
    ],
)
def test_python_tags_are_refused_and_never_run(tmp_path, monkeypatch, capsys, payload):
    marker = tmp_path / "owned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(payload.format(marker=marker))
    with pytest.raises(SpecError, match="unsupported YAML tag"):
        load_spec(spec)
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(spec))
    assert_one_error_line(code, out, err, "safe loader")
    assert not marker.exists()


def test_the_loader_is_the_safe_one():
    source = (REPO / "spaces" / "loader.py").read_text()
    assert "yaml.safe_load(" in source
    assert not re.search(r"yaml\.(load|full_load|unsafe_load)\(", source)
    assert "Loader=yaml.SafeLoader" in source


# -- remote code -------------------------------------------------------------------------------


def tiny_spec(tmp_path: Path, trust: bool | None) -> Path:
    data = spec_data("remote")
    data["task"] = {"dataset": "synthetic", "synthetic_size": 100}
    if trust is not None:
        data["model"] = {"name": "tiny-bert", "trust_remote_code": trust}
    path = tmp_path / f"remote-{trust}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("trust", [None, False, True])
def test_validate_warns_only_when_remote_code_is_trusted(tmp_path, monkeypatch, capsys, trust):
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(tiny_spec(tmp_path, trust)))
    assert code == 0, err
    warned = "trust_remote_code is on" in err
    assert warned == bool(trust)


def test_submit_warns_when_remote_code_is_trusted(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    finished_study(url, "remote")  # so the submit is refused before any training
    spec = tiny_spec(tmp_path, True)
    code, out, err = run_cli(monkeypatch, capsys, "submit", str(spec), "--storage", url)
    assert code == 2 and "trust_remote_code is on" in err


def test_trust_remote_code_comes_only_from_the_spec(tmp_path):
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    assert resolve_model(str(model_dir)).trust_remote_code is False
    assert resolve_model(str(model_dir), trust_remote_code=True).trust_remote_code is True
    assert resolve_model("tiny-bert", trust_remote_code=True).trust_remote_code is False  # built-in
    assert parse_spec("study: x\n").spec.model.trust_remote_code is False
    # every caller passes the spec's flag, never a constant True
    for path in ("search/service/lifecycle.py", "search/cli/spec.py", "trainers/run.py"):
        source = (REPO / path).read_text()
        assert "trust_remote_code=spec.model.trust_remote_code" in source, path
    assert "trust_remote_code=True" not in "".join(
        p.read_text() for d in ("search", "spaces", "trainers") for p in (REPO / d).rglob("*.py")
    )


@pytest.mark.parametrize("trust", [False, True])
def test_transformers_gets_the_flag_of_the_source(tmp_path, monkeypatch, trust):
    import transformers

    from paretune.trainers import models

    calls: dict[str, Any] = {}

    class FakeTokenizer:
        pad_token = "[PAD]"

    def tokenizer(path: str, **kwargs: Any) -> Any:
        calls["tokenizer"] = kwargs.get("trust_remote_code")
        return FakeTokenizer()

    def model(path: str, **kwargs: Any) -> Any:
        calls["model"] = kwargs.get("trust_remote_code")
        return SimpleNamespace(config=SimpleNamespace())

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", model)
    where = str(tmp_path / f"m-{trust}-{time.monotonic_ns()}")
    source = ModelSource("local", {"model_type": "bert"}, where, where, trust)
    models.load_tokenizer(source)
    models._build(source, 2, 0, "classification")
    assert calls == {"tokenizer": trust, "model": trust}


# -- SQL ---------------------------------------------------------------------------------------

EVIL = "x'; DROP TABLE paretune_studies; --\"); DELETE FROM trials; --"


def test_quotes_and_semicolons_round_trip_through_the_store(tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    finished_study(url)
    code, out, err = run_cli(monkeypatch, capsys, "status", EVIL, "--storage", url)
    assert_one_error_line(code, out, err, "unknown study")
    store = open_store(url)
    try:
        info = store.get_study("done")
        store.log_event(info.id, EVIL, {"why": EVIL}, trial_number=7)
        store.record_metrics(info.id, 7, 1, {EVIL: 1.5})
        assert store.events(info.id, trial_number=7) == [
            {
                "trial_number": 7,
                "time": store.events(info.id, 7)[0]["time"],
                "kind": EVIL,
                "detail": {"why": EVIL},
            }  # fmt: skip
        ]
        assert store.metrics(info.id, trial_number=7, name=EVIL)[0]["value"] == 1.5
        assert store.find_study(EVIL) is None
    finally:
        store.dispose()
    from paretune.search.store import read as store_read

    engine = create_engine(url)
    try:
        assert store_read.find_study(engine, EVIL) is None
        assert [s["name"] if isinstance(s, dict) else s.name for s in store_read.studies(engine)] == ["done"]  # fmt: skip
    finally:
        engine.dispose()
    engine = create_engine(url)
    try:  # every table is still there, the study too
        assert {"paretune_studies", "paretune_events", "trials"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()
    code, out, err = run_cli(monkeypatch, capsys, "status", "done", "--storage", url)
    assert code == 0 and "done" in out


# Interpolated fragments allowed in SQL f-strings: each is built from constants only (reviewed).
SQL_FRAGMENTS = {"_STUDY_COLUMNS", "oid", "join", "where"}
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA)\b")


def test_no_sql_is_built_from_values():
    offenders = []
    for folder in ("search", "spaces", "trainers", "dashboard"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if not SQL_WORDS.search(literal):
                        continue
                    for v in node.values:
                        if isinstance(v, ast.FormattedValue) and not (
                            isinstance(v.value, ast.Name) and v.value.id in SQL_FRAGMENTS
                        ):
                            offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
                elif (
                    isinstance(node, ast.BinOp)
                    and isinstance(node.op, ast.Mod)
                    and isinstance(node.left, ast.Constant)
                    and isinstance(node.left.value, str)
                    and SQL_WORDS.search(node.left.value)
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} (% formatting)")
    assert offenders == []
