"""The bad-input sweep: every bad spec or CLI call gives one clear line on stderr, exit status 2,
no traceback, and leaves the database exactly as it was (a hash of a dump of every table).

The calls run in-process (``paretune.search.cli.app.main`` with ``sys.argv`` patched); a few also run
through the real ``paretune`` executable. The database already holds a small finished study
``done`` (trial 0 COMPLETE, 1 PRUNED, 2 FAIL), built without Ray.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from paretune.search.cli.app import main
from paretune.search.service import lifecycle as service
from paretune.search.service.searcher import SearchCore
from paretune.search.service.trainable import ERROR_KEY
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec

PARETUNE = Path(sys.executable).with_name("paretune")
DELETE = object()

BASE: dict[str, Any] = {
    "study": "other",
    "model": "tiny-bert",
    "task": {"dataset": "synthetic"},
    "objectives": ["accuracy", "trainable_params"],
    "space": {
        "lora": {"targets": ["query", "value"], "ranks": [0, 4]},
        "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    },
    "search": {"n_trials": 3, "max_steps": 9, "min_steps": 3, "scheduler": "none"},
}


def spec_data(name: str = "other", **changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes (``search.n_trials=0``; DELETE removes a key)."""
    data = copy.deepcopy(BASE)
    data["study"] = name
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def finished_study(url: str, name: str = "done") -> None:
    """A study with one COMPLETE, one PRUNED and one FAIL trial, recorded without Ray."""
    loaded = parse_spec(yaml.safe_dump(spec_data(name)), f"{name}.yaml")
    store = open_store(url)
    try:
        core = SearchCore(service.prepare_submit(store, loaded).ctx, driver_id="fixture")
        ends: list[dict[str, Any] | None] = [
            {"step": 9, "accuracy": 0.8, "eval_loss": 0.2},
            None,  # stopped after its first rung: PRUNED
            {"step": 3, ERROR_KEY: "Traceback ...\nRuntimeError: boom"},
        ]
        for end in ends:
            n = core.next_trial()["trial_number"]
            core.on_result(n, {"trial_number": n, "step": 3, "accuracy": 0.6, "eval_loss": 0.4})
            core.on_end(n, None if end is None else {"trial_number": n, **end})
        store.set_status(name, "done")
        store.optuna_storage().engine.dispose()
    finally:
        store.dispose()


def db_digest(path: Path) -> str:
    """sha256 of a dump of every table (the file itself may differ with no change of content)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "study.db"
    finished_study(f"sqlite:///{path}")
    return path


@pytest.fixture
def db(template, tmp_path) -> Path:
    """A private copy of the template database."""
    for f in template.parent.iterdir():
        if f.name.startswith(template.name):
            shutil.copy(f, tmp_path / f.name)
    return tmp_path / template.name


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["paretune", *argv])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_error_line(code: int, out: str, err: str, expected: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.strip()]
    # `submit` names the study and the store before it starts, and off a terminal a running
    # study logs its status lines (progress.plain_line); everything else is the error
    errors = [line for line in errors if not re.match(r"study \S+ in \w[\w+]*://\S+$", line)]
    errors = [line for line in errors if not re.match(r"\S+ trials \d+/\d+  complete \d+ ", line)]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: "), err
    assert expected in errors[0], (expected, errors[0])


# -- bad specs, submitted to the store ---------------------------------------------------------

SPEC_CASES: list[tuple[str, dict[str, Any] | str, str]] = [
    ("n_trials wrong type", {"search__n_trials": "many"}, "search.n_trials"),
    ("n_trials zero", {"search__n_trials": 0}, "greater than or equal to 1"),
    ("n_trials negative", {"search__n_trials": -3}, "search.n_trials"),
    ("max_steps zero", {"search__max_steps": 0}, "search.max_steps"),
    ("min_steps over max_steps", {"search__min_steps": 20}, "must not exceed max_steps"),
    ("eta one", {"search__eta": 1}, "search.eta"),
    ("max_concurrent zero", {"search__max_concurrent": 0}, "search.max_concurrent"),
    ("trial_timeout_s negative", {"search__trial_timeout_s": -1}, "search.trial_timeout_s"),
    ("unknown sampler", {"search__sampler": "bayes"}, "search.sampler"),
    ("unknown scheduler", {"search__scheduler": "pbt"}, "search.scheduler"),
    ("unknown family", {"space__loraa": {}}, "unknown field 'loraa'"),
    ("unknown top-level field", {"studdy": "x"}, "unknown field 'studdy'"),
    ("rank over the dimension", {"space__lora": {"ranks": [0, 128]}}, "larger than"),
    ("negative rank", {"space__lora": {"ranks": [0, -2]}}, "ranks must be >= 0"),
    ("layer out of range", {"space__layers": [9]}, "layer 9 does not exist"),
    (
        "learning rate bounds reversed",
        {"space__learning_rate": {"low": 1e-2, "high": 1e-3}},
        "reversed",
    ),  # fmt: skip
    ("learning rate zero", {"space__learning_rate": 0.0}, "learning_rate must be > 0"),
    ("batch size zero", {"space__batch_size": 0}, "batch_size must be >= 1"),
    ("warmup ratio over one", {"space__warmup_ratio": 1.5}, "warmup_ratio must be in"),
    ("no family", {"space__lora": DELETE}, "enable at least one PEFT family"),
    ("unknown objective", {"objectives": ["accuracy", "latency"]}, "unknown objective 'latency'"),
    ("duplicated objective", {"objectives": ["accuracy", "accuracy"]}, "listed twice: accuracy"),
    ("no objective", {"objectives": []}, "at least one objective"),
    (
        "wrong direction",
        {"objectives": [{"name": "accuracy", "direction": "minimize"}]},
        "maximized",
    ),  # fmt: skip
    (
        "reference point off the objectives",
        {"search__reference_point": {"eval_loss": 1.0}},
        "not an objective",
    ),  # fmt: skip
    (
        "budget below the head",
        {"search__constraints": {"max_trainable_params": 10}},
        "below the smallest plan",
    ),  # fmt: skip
    ("bad study name", {"study": "bad name!"}, "study must be"),
    ("unknown model", {"model": "no-such-model"}, "unknown model 'no-such-model'"),
    ("cpus zero", {"resources__cpus": 0}, "resources.cpus"),
    ("yaml syntax error", "study: [other\n", "YAML syntax error"),
    ("yaml not a mapping", "- a\n- b\n", "a spec is a YAML mapping"),
    (
        "python object tag",
        "study: !!python/object/apply:os.system ['echo owned']\n",
        "unsupported YAML tag",
    ),
    ("empty file", "", "a spec is a YAML mapping"),
]


@pytest.mark.parametrize(("case", "spec", "expected"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_spec_is_refused_with_one_line_and_the_store_unchanged(
    db, tmp_path, monkeypatch, capsys, case, spec, expected
):
    path = tmp_path / "spec.yaml"
    if isinstance(spec, str):
        path.write_text(spec)
    else:
        data = spec_data(**{k: v for k, v in spec.items() if k != "study"})
        if "study" in spec:
            data["study"] = spec["study"]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = db_digest(db)
    code, out, err = run_cli(
        monkeypatch, capsys, "submit", str(path), "--storage", f"sqlite:///{db}"
    )
    assert_one_error_line(code, out, err, expected)
    assert db_digest(db) == before


# -- bad calls ---------------------------------------------------------------------------------

CALL_CASES: list[tuple[str, list[str], str]] = [
    ("missing spec file", ["submit", "{tmp}/missing.yaml", "--storage", "{url}"], "not found"),
    ("spec is a directory", ["submit", "{tmp}", "--storage", "{url}"], "is a directory"),
    ("validate without spec", ["validate"], "Missing argument"),
    ("unknown command", ["frobnicate"], "No such command"),
    ("unknown option", ["status", "--bogus", "--storage", "{url}"], "No such option: --bogus"),
    (
        "malformed storage scheme",
        ["status", "--storage", "mysql://u:p@h/db"],
        "malformed storage URL",
    ),  # fmt: skip
    ("sqlite URL without path", ["studies", "--storage", "sqlite://"], "malformed storage URL"),
    (
        "postgres URL without database",
        ["status", "--storage", "postgresql://u@h"],
        "needs a host and a database",
    ),  # fmt: skip
    (
        "storage directory missing",
        ["status", "--storage", "sqlite:///{tmp}/no/x.db"],
        "does not exist",
    ),  # fmt: skip
    (
        "storage file missing",
        ["status", "--storage", "sqlite:///{tmp}/none.db"],
        "no such database file",
    ),  # fmt: skip
    ("unknown study status", ["status", "nope", "--storage", "{url}"], "unknown study 'nope'"),
    ("unknown study pareto", ["pareto", "nope", "--storage", "{url}"], "unknown study 'nope'"),
    ("unknown study resume", ["resume", "nope", "--storage", "{url}"], "unknown study 'nope'"),
    ("unknown study stop", ["stop", "nope", "--storage", "{url}"], "unknown study 'nope'"),
    ("stop a study not running", ["stop", "done", "--storage", "{url}"], "is not running"),
    ("delete without --yes", ["delete", "done", "--storage", "{url}"], "add --yes"),
    ("unknown study delete", ["delete", "nope", "--yes", "--storage", "{url}"], "unknown study"),
    (
        "negative --add-trials",
        ["resume", "done", "--add-trials", "-1", "--storage", "{url}"],
        "--add-trials",
    ),  # fmt: skip
    (
        "bad --format status",
        ["status", "done", "--format", "yaml", "--storage", "{url}"],
        "unknown format 'yaml'",
    ),  # fmt: skip
    (
        "bad --format pareto",
        ["pareto", "done", "--format", "xml", "--storage", "{url}"],
        "unknown format 'xml'",
    ),  # fmt: skip
    (
        "csv of every study",
        ["status", "--format", "csv", "--storage", "{url}"],
        "one study's trials",
    ),  # fmt: skip
    (
        "bad --format studies",
        ["studies", "--format", "csv", "--storage", "{url}"],
        "unknown format 'csv'",
    ),  # fmt: skip
    (
        "export a PRUNED trial",
        ["export", "done", "--trial", "1", "--out", "{tmp}/o", "--storage", "{url}"],
        "is PRUNED, not COMPLETE",
    ),  # fmt: skip
    (
        "export a FAIL trial",
        ["export", "done", "--trial", "2", "--out", "{tmp}/o", "--storage", "{url}"],
        "is FAIL, not COMPLETE",
    ),  # fmt: skip
    (
        "export a missing trial",
        ["export", "done", "--trial", "99", "--out", "{tmp}/o", "--storage", "{url}"],
        "has no trial 99",
    ),  # fmt: skip
    (
        "export unknown study",
        ["export", "nope", "--trial", "0", "--out", "{tmp}/o", "--storage", "{url}"],
        "unknown study 'nope'",
    ),  # fmt: skip
    (
        "export trial not a number",
        ["export", "done", "--trial", "x", "--storage", "{url}"],
        "--trial",
    ),  # fmt: skip
    ("params not JSON", ["trial", "{spec}", "--params", "{{not json"], "not valid JSON"),
    ("params not an object", ["trial", "{spec}", "--params", "[1, 2]"], "must be a JSON object"),
    (
        "params unknown name",
        ["trial", "{spec}", "--params", '{{"warp.speed": 9}}'],
        "unknown parameter 'warp.speed'",
    ),  # fmt: skip
    ("params file missing", ["trial", "{spec}", "--params", "@{tmp}/p.json"], "cannot be read"),
    (
        "params glob matches nothing",
        ["trial", "{spec}", "--params", '{{"ia3.*": 1}}'],
        "matches no parameter",
    ),  # fmt: skip
    ("trial steps zero", ["trial", "{spec}", "--max-steps", "0"], "--max-steps"),
    ("submit an existing study", ["submit", "{done_spec}", "--storage", "{url}"], "already exists"),
]


@pytest.mark.parametrize(("case", "argv", "expected"), CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_bad_call_gives_one_line_status_2_and_the_store_unchanged(
    db, tmp_path, monkeypatch, capsys, case, argv, expected
):
    spec = tmp_path / "good.yaml"
    spec.write_text(yaml.safe_dump(spec_data("other"), sort_keys=False))
    done_spec = tmp_path / "done.yaml"
    done_spec.write_text(yaml.safe_dump(spec_data("done"), sort_keys=False))
    monkeypatch.chdir(tmp_path)  # a stray default sqlite:///paretune.db would land here
    values = {"url": f"sqlite:///{db}", "tmp": str(tmp_path), "spec": str(spec)}
    values["done_spec"] = str(done_spec)
    before = db_digest(db)
    code, out, err = run_cli(monkeypatch, capsys, *[a.format(**values) for a in argv])
    assert_one_error_line(code, out, err, expected)
    assert db_digest(db) == before
    assert not (tmp_path / "paretune.db").exists()


def test_the_sweep_is_at_least_thirty_cases():
    assert len(SPEC_CASES) + len(CALL_CASES) >= 60


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "nope", "--storage", "{url}"], "unknown study 'nope'"),
        (["submit", "{tmp}/missing.yaml", "--storage", "{url}"], "not found"),
        (["pareto", "done", "--format", "xml", "--storage", "{url}"], "unknown format 'xml'"),
    ],
)
def test_the_real_executable_says_the_same(db, tmp_path, argv, expected):
    values = {"url": f"sqlite:///{db}", "tmp": str(tmp_path)}
    before = db_digest(db)
    env = {**os.environ, "PARETUNE_STORAGE": ""}
    proc = subprocess.run(
        [str(PARETUNE), *[a.format(**values) for a in argv]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, expected)
    assert db_digest(db) == before
