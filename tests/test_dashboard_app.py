"""Every dashboard page through Streamlit's AppTest, on synthetic studies with known answers."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from streamlit.testing.v1 import AppTest
from synthetic_study import build_empty_study, build_synthetic_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash_app") / "store.db"
    url = f"sqlite:///{path}"
    infos = {
        "alpha": build_synthetic_study(
            url, "alpha", n_trials=60, n_steps=9, infeasible_fraction=0.2, seed=21, bulk=True
        ),
        "gamma": build_synthetic_study(
            url,
            "gamma",
            n_trials=40,
            n_steps=6,
            objectives=("accuracy", "trainable_params", "train_seconds"),
            seed=22,
            bulk=True,
        ),
        "live": build_synthetic_study(
            url, "live", n_trials=20, n_steps=5, n_running=3, status="running", seed=23, bulk=True
        ),
        "tiny": build_synthetic_study(
            url,
            "tiny",
            n_trials=4,
            n_steps=3,
            fail_fraction=0.0,
            prune_fraction=0.0,
            seed=24,
            bulk=True,
        ),
    }
    build_empty_study(url, "empty")
    return {"url": url, "path": path, **infos}


def run(monkeypatch, url: str, page: str | None = None, **query: Any) -> AppTest:
    monkeypatch.setenv("PARETUNE_STORAGE", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = []
    for kind in (
        "markdown",
        "caption",
        "info",
        "error",
        "warning",
        "title",
        "subheader",
        "code",
        "header",
    ):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly specs of the page's charts, by element key suffix (falls back to the order)."""
    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        out[el.proto.id.rsplit("-", 1)[-1] if el.proto.id else str(i)] = spec
        out[str(i)] = spec
    return out


def trace_len(trace: dict, axis: str = "x") -> int:
    """Points in a trace; plotly ships numpy arrays as base64 typed arrays."""
    v = trace.get(axis)
    if v is None:
        return 0
    if isinstance(v, dict) and "bdata" in v:
        return int(np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).size)
    return len(v)


def trace(spec: dict, name: str) -> dict:
    matches = [t for t in spec["data"] if str(t.get("name", "")).startswith(name)]
    assert matches, [t.get("name") for t in spec["data"]]
    return matches[0]


def pareto_spec(at: AppTest) -> dict:
    for spec in figures(at).values():
        if any(t.get("name") == "Pareto front" for t in spec["data"]):
            return spec
    raise AssertionError("no Pareto chart on the page")


# -- studies page ------------------------------------------------------------------------


def test_studies_page_lists_every_study(store, monkeypatch):
    at = run(monkeypatch, store["url"])
    assert [t.value for t in at.title] == ["Studies"]
    table = at.dataframe[0].value.set_index("study")
    assert sorted(table.index) == ["alpha", "empty", "gamma", "live", "tiny"]
    for name in ("alpha", "gamma", "live", "tiny"):
        info = store[name]
        assert table.loc[name, "pareto_size"] == len(info.pareto_numbers)
        assert table.loc[name, "trials"] == sum(info.states.values())
        for state, n in info.states.items():
            assert table.loc[name, state] == n
        assert table.loc[name, "hv_source"] == "recorded"
    assert table.loc["live", "status"] == "running" and table.loc["empty", "trials"] == 0
    assert {m.label: m.value for m in at.metric}["Running"] == "1"
    assert len(at.get("page_link")) == 5


# -- study page --------------------------------------------------------------------------


def test_pareto_tab_plots_the_front_on_the_chosen_axes(store, monkeypatch):
    info = store["alpha"]
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pareto size"] == str(len(info.pareto_numbers))
    assert metrics["Complete"] == str(info.states["COMPLETE"])
    axes = {s.label: s.value for s in at.selectbox}
    assert axes["x axis"] == "trainable_params" and axes["y axis"] == "accuracy"
    spec = pareto_spec(at)
    front = trace(spec, "Pareto front")
    assert trace_len(front) == len(info.pareto_numbers)
    assert "trainable_params" in spec["layout"]["xaxis"]["title"]["text"]
    assert "accuracy" in spec["layout"]["yaxis"]["title"]["text"]
    assert trace_len(trace(spec, "Infeasible")) == len(info.infeasible_numbers)
    assert trace(spec, "Dominated")["opacity"] < 0.5
    assert trace(spec, "Front (step line)")["line"]["shape"] == "hv"
    assert "lora r" in str(front["text"])  # hover shows the plan summary
    assert "learning_rate" in str(front["text"])  # and the hyperparameters
    # the user swaps the axes
    at.selectbox(key="x_axis").set_value("accuracy")
    at.selectbox(key="y_axis").set_value("trainable_params").run()
    spec = pareto_spec(at)
    assert "accuracy" in spec["layout"]["xaxis"]["title"]["text"]
    assert trace(spec, "Front (step line)")["line"]["shape"] == "vh"
    assert trace_len(trace(spec, "Pareto front")) == len(info.pareto_numbers)
    # the front table lists the same trials
    assert sorted(at.dataframe[0].value["number"]) == list(info.pareto_numbers)


def test_third_objective_is_the_colour(store, monkeypatch):
    info = store["gamma"]
    at = run(monkeypatch, store["url"], "page_study.py", study="gamma")
    assert {s.label: s.value for s in at.selectbox}["colour"] == "train_seconds"
    spec = pareto_spec(at)
    assert trace_len(trace(spec, "Pareto front")) == len(info.pareto_numbers)
    assert "train_seconds" in spec["layout"]["coloraxis"]["colorbar"]["title"]["text"]
    assert trace(spec, "Pareto front")["marker"]["coloraxis"] == "coloraxis"


def test_progress_tab(store, monkeypatch):
    info = store["alpha"]
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Progress")
    specs = list({id(s): s for s in figures(at).values()}.values())
    hv = [s for s in specs if s["data"] and s["data"][0].get("name") == "hypervolume"]
    assert len(hv) == 2
    assert all(trace_len(s["data"][0], "y") == info.n_hypervolume_rows for s in hv)
    curves = [
        s for s in specs if any(str(t.get("name", "")).startswith("PRUNED") for t in s["data"])
    ]
    assert len(curves) == 1
    names = [t["name"] for t in curves[0]["data"]]
    assert any(n.startswith("Pareto-optimal") for n in names) and any(
        n.startswith("COMPLETE") for n in names
    )
    assert f"PRUNED ({info.states['PRUNED']})" in names
    assert len(curves[0]["layout"]["shapes"]) == len(info.rungs)
    assert f"{info.n_primary_rows} points" in texts(at)


def test_placement_tab(store, monkeypatch):
    info = store["alpha"]
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Placement")
    heat = [s for s in figures(at).values() if s["data"] and s["data"][0]["type"] == "heatmap"][0][
        "data"
    ][0]
    assert heat["x"] == ["lora:query", "lora:value"]
    assert heat["y"] == [f"L{i}" for i in range(6)]
    assert f"of the {len(info.pareto_numbers)} pareto-optimal trials" in texts(at)
    at.radio(key="placement_of").set_value("All COMPLETE trials").run()
    assert f"of the {info.states['COMPLETE']} all complete trials" in texts(at)


def test_parameters_tab(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Parameters")
    kinds = [s["data"][0]["type"] for s in {id(s): s for s in figures(at).values()}.values()]
    assert "parcoords" in kinds and "bar" in kinds
    bars = [s for s in figures(at).values() if s["data"][0]["type"] == "bar"][0]
    assert {t["name"] for t in bars["data"]} == {"accuracy", "trainable_params"}
    par = [s for s in figures(at).values() if s["data"][0]["type"] == "parcoords"][0]["data"][0]
    labels = [d["label"] for d in par["dimensions"]]
    assert labels[-2:] == ["accuracy", "trainable_params"] and "log10(learning_rate)" in labels


def test_parameters_tab_guards_small_studies(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="tiny", tab="Parameters")
    assert "needs at least 8 COMPLETE trials" in texts(at)


def test_trials_tab_filters_sorts_and_downloads(store, monkeypatch):
    info = store["alpha"]
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Trials")
    table = at.dataframe[0].value
    assert len(table) == sum(info.states.values())
    assert set(table.loc[table["pareto"], "number"]) == set(info.pareto_numbers)
    at.multiselect(key="state_filter").set_value(["PRUNED"]).run()
    table = at.dataframe[0].value
    assert len(table) == info.states["PRUNED"] and set(table["state"]) == {"PRUNED"}
    assert (table["last_step"] < info.max_steps).all()
    at.multiselect(key="state_filter").set_value(["COMPLETE"])
    at.selectbox(key="sort_by").set_value("accuracy")
    at.toggle(key="sort_desc").set_value(True).run()
    table = at.dataframe[0].value
    assert table["accuracy"].iloc[0] == table["accuracy"].max()
    assert table["accuracy"].is_monotonic_decreasing
    assert at.get("download_button")[0].proto.label == "Download CSV"


def test_trial_tab_failed_trial_shows_traceback(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Trials")
    table = at.dataframe[0].value
    failed = int(table.loc[table["state"] == "FAIL", "number"].iloc[0])
    at = run(
        monkeypatch, store["url"], "page_study.py", study="alpha", tab="Trial", trial=str(failed)
    )
    codes = [c.value for c in at.code]
    assert any("Traceback (most recent call last)" in c for c in codes)
    assert f"Trial {failed}: FAIL" in texts(at)
    assert not any("paretune export" in c for c in codes)


def test_trial_tab_export_command(store, monkeypatch):
    n = store["alpha"].pareto_numbers[0]
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha", tab="Trial", trial=str(n))
    assert f"Trial {n}: COMPLETE · Pareto-optimal" in texts(at)
    codes = [c.value for c in at.code]
    assert (
        f"paretune export alpha --trial {n} --out runs/alpha/trial-{n} --storage {store['url']}"
        in codes
    )
    assert at.selectbox(key="trial_pick").value == n
    assert any(e.proto.body and "lora" in e.proto.body for e in at.get("json"))
    # choosing another trial updates the URL
    other = store["alpha"].pareto_numbers[-1]
    at.selectbox(key="trial_pick").set_value(other).run()
    assert at.query_params["trial"] in (str(other), [str(other)])


def test_trial_tab_lists_the_retrained_seeds_with_their_test_figures(tmp_path, monkeypatch):
    from paretune.search.store.study_store import RETRAINED, open_store  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'store.db'}"
    info = build_synthetic_study(url, "beta", n_trials=6, n_steps=3, fail_fraction=0.0, seed=5)
    n = info.pareto_numbers[0]
    store = open_store(url, create=False)
    try:
        sid = store.get_study("beta").id
        for seed, (acc, test) in enumerate([(0.81, 0.79), (0.80, 0.83)]):
            metrics = {"accuracy": acc, "trainable_params": 1000.0, "test_accuracy": test}
            detail = {"seed": seed, "steps": 90, "metrics": {**metrics, "test_loss": 0.4}}
            store.log_event(sid, RETRAINED, detail, trial_number=n)
    finally:
        store.dispose()
    at = run(monkeypatch, url, "page_study.py", study="beta", tab="Trial", trial=str(n))
    assert "Retrained" in texts(at)
    table = next(df.value for df in at.dataframe if "test_accuracy" in df.value.columns)
    assert list(table.columns) == [
        "seed", "steps", "accuracy", "trainable_params", "test_accuracy", "test_loss",
    ]  # fmt: skip
    assert table["test_accuracy"].tolist() == [0.79, 0.83] and table["seed"].tolist() == [0, 1]
    other = next(t for t in range(6) if t != n)
    at = run(monkeypatch, url, "page_study.py", study="beta", tab="Trial", trial=str(other))
    assert "Retrained" not in texts(at)  # only the trial that was retrained


def test_live_study_says_how_many_trials_run(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="live")
    live = [i.value for i in at.info if "Live:" in str(i.value)]
    assert live and "3 trials running" in live[0] and "refreshes every 5 s" in live[0]
    assert {m.label: m.value for m in at.metric}["Running"] == "3"
    # a finished study is not live
    at = run(monkeypatch, store["url"], "page_study.py", study="alpha")
    assert not [i for i in at.info if "Live:" in str(i.value)]


# -- compare -----------------------------------------------------------------------------


def test_compare_overlays_fronts(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_compare.py", studies=["alpha", "gamma"])
    assert at.multiselect(key="compare_studies").value == ["alpha", "gamma"]
    spec = list(figures(at).values())[0]
    names = [t["name"] for t in spec["data"]]
    assert any(n.startswith("alpha: front") for n in names) and any(
        n.startswith("gamma: front") for n in names
    )
    table = at.dataframe[0].value.set_index("study")
    assert table.loc["alpha", "complete"] == store["alpha"].states["COMPLETE"] - len(
        store["alpha"].infeasible_numbers
    )
    assert table.loc["alpha", "front size"] == len(
        store["alpha"].pareto_numbers
    )  # 2 objectives: the same front
    assert (table["hypervolume"] > 0).all()
    at.multiselect(key="compare_studies").set_value(["alpha"]).run()
    assert "Choose two or more studies" in texts(at)


# -- failures ------------------------------------------------------------------------------


def test_unknown_study(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="nope")
    errors = [e.value for e in at.error]
    assert errors and "Unknown study 'nope'" in errors[0] and "alpha" in errors[0]


def test_empty_study(store, monkeypatch):
    at = run(monkeypatch, store["url"], "page_study.py", study="empty")
    assert any("has no trials yet" in str(i.value) for i in at.info)
    assert not at.error


def test_unreachable_database_shows_a_message_without_password(monkeypatch):
    url = "postgresql+psycopg://bob:s3cret-pw@127.0.0.1:1/paretune"
    for page in (None, "page_study.py", "page_compare.py"):
        at = run(monkeypatch, url, page, study="alpha")
        errors = [e.value for e in at.error]
        assert errors and errors[0].startswith(
            "cannot read storage postgresql+psycopg://bob:***@127.0.0.1:1/paretune"
        )
        everything = texts(at) + "".join(str(e.value) for e in at.sidebar.get("caption"))
        assert "s3cret-pw" not in everything


def test_missing_database_file(tmp_path, monkeypatch):
    path = tmp_path / "absent.db"
    at = run(monkeypatch, f"sqlite:///{path}")
    assert "no such database file" in at.error[0].value
    assert not path.exists()


def test_database_without_paretune_tables(tmp_path, monkeypatch):
    path = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(path).execute("CREATE TABLE other (a INTEGER)").connection.commit()
    at = run(monkeypatch, f"sqlite:///{path}")
    assert "holds no paretune studies" in at.error[0].value


def test_malformed_storage_url(monkeypatch):
    at = run(monkeypatch, "mysql://x:pw@h/db")
    assert (
        at.error and "malformed storage URL" in at.error[0].value and "pw@" not in at.error[0].value
    )


def test_pages_never_write(store, monkeypatch):
    digest = hashlib.sha256(Path(store["path"]).read_bytes()).hexdigest()
    for page, query in (
        (None, {}),
        ("page_study.py", {"study": "alpha", "tab": "Trials"}),
        ("page_study.py", {"study": "live", "tab": "Progress"}),
        ("page_compare.py", {}),
    ):
        run(monkeypatch, store["url"], page, **query)
    assert hashlib.sha256(Path(store["path"]).read_bytes()).hexdigest() == digest


def test_live_study_with_a_dead_driver_warns(tmp_path, monkeypatch):
    from datetime import timedelta

    from sqlalchemy import create_engine, update

    from paretune.search.store.study_store import StudyRow, utcnow

    url = f"sqlite:///{tmp_path / 'stale.db'}"
    build_synthetic_study(
        url, "stale", n_trials=10, n_steps=3, n_running=1, status="running", seed=3, bulk=True
    )
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(update(StudyRow).values(heartbeat_at=utcnow() - timedelta(minutes=30)))
    eng.dispose()
    at = run(monkeypatch, url, "page_study.py", study="stale")
    warnings = [w.value for w in at.warning]
    assert (
        warnings
        and "heartbeat is 30 min ago" in warnings[0]
        and "paretune resume stale" in warnings[0]
    )


# -- the command -----------------------------------------------------------------------------


def test_cli_serves_headless_on_localhost_with_the_url_in_the_environment():
    from paretune.search.cli import dashboard as cli_dashboard

    cmd = cli_dashboard.streamlit_command("127.0.0.1", 8501)
    joined = " ".join(cmd)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboard/app.py")
    assert Path(cmd[4]).is_file()
    for flag in (
        "--server.address 127.0.0.1",
        "--server.port 8501",
        "--server.headless true",
        "--browser.gatherUsageStats false",
    ):
        assert flag in joined
    url = "postgresql+psycopg://bob:pw@db/pt"
    env = cli_dashboard.streamlit_env(url)
    assert env["PARETUNE_STORAGE"] == url and "pw" not in joined


def test_cli_rejects_a_malformed_url_in_one_line():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "paretune.search.cli.app",
            "dashboard",
            "--storage",
            "mysql://u:secretpw@h/db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: malformed storage URL") and "secretpw" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_rejection_message_names_the_budget():
    import pandas as pd

    from paretune.dashboard.tab_trial import rejection_message

    events = pd.DataFrame(
        {
            "kind": ["rejected"],
            "detail": [{"trainable_params": 120000, "max_trainable_params": 50000}],
        }
    )
    assert rejection_message(events) == (
        "Rejected before training: 120,000 trainable parameters, over max_trainable_params = 50,000."
    )
    assert rejection_message(pd.DataFrame()).startswith("Rejected before training")
