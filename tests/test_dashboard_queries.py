"""The dashboard's read-only queries and pure computations, against synthetic studies whose
answers are known (tests/synthetic_study.py) and against search/pareto's own computation."""

from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import timezone

import numpy as np
import optuna
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from synthetic_study import build_empty_study, build_synthetic_study

from paretune.dashboard import analysis, charts, db
from paretune.dashboard.importance import TooFewTrials, param_importances
from paretune.dashboard.overview import overview_frame
from paretune.dashboard.spec_view import spec_view
from paretune.dashboard.study_data import build_study_data
from paretune.search.algorithms.pareto import (
    constraints_hold,
    dominates,
    hypervolume,
    pareto_indices,
    pareto_mask,
    to_min_form,
)
from paretune.search.store import read as store_read

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash_queries") / "store.db"
    url = f"sqlite:///{path}"
    alpha = build_synthetic_study(
        url,
        "alpha",
        n_trials=48,
        n_steps=9,
        n_running=2,
        infeasible_fraction=0.25,
        status="running",
        seed=11,
    )
    beta = build_synthetic_study(
        url,
        "beta",
        n_trials=30,
        n_steps=6,
        objectives=("accuracy", "trainable_params", "train_seconds"),
        seed=12,
        bulk=True,
    )
    build_empty_study(url, "empty")
    engine = db.readonly_engine(url)
    yield {"url": url, "path": path, "alpha": alpha, "beta": beta, "engine": engine}
    engine.dispose()


def _record(store, name):
    rec = store_read.find_study(store["engine"], name)
    assert rec is not None
    return rec


def _study_data(store, name):
    eng = store["engine"]
    rec = _record(store, name)
    n_obj = len(spec_view(rec.spec_json, rec.optuna_directions).objectives)
    params, dists = store_read.params(eng, rec.optuna_id)
    hv = store_read.hypervolume_history(eng, rec.id)
    return build_study_data(
        rec,
        store_read.trials(eng, rec.optuna_id, n_obj),
        params,
        dists,
        float(hv["value"].iloc[-1]) if len(hv) else None,
        store_read.latest_event_detail(eng, rec.id, "reference_point"),
    )


def _optuna_front(url: str, name: str) -> list[int]:
    """The front computed independently: Optuna's own loading and search/pareto."""
    study = optuna.load_study(study_name=name, storage=url)
    directions = [
        "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        for d in study.directions
    ]
    complete = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and all(c <= 0 for c in t.user_attrs.get("constraints", []))
    ]
    idx = pareto_indices([to_min_form(t.values, directions) for t in complete])
    return sorted(complete[i].number for i in idx)


# -- studies -----------------------------------------------------------------------------


def test_studies_and_state_counts(store):
    eng = store["engine"]
    recs = store_read.studies(eng)
    assert {r.name for r in recs} == {"alpha", "beta", "empty"}
    by_name = {r.name: r for r in recs}
    assert by_name["alpha"].status == "running" and by_name["empty"].status == "created"
    assert by_name["beta"].optuna_directions == ("maximize", "minimize", "minimize")
    counts = store_read.state_counts(eng).set_index("optuna_id")
    for name in ("alpha", "beta"):
        row = counts.loc[by_name[name].optuna_id]
        expected = store[name].states
        assert {s: int(row[s]) for s in store_read.STATES if row[s]} == expected
    assert by_name["empty"].optuna_id not in counts.index


def test_overview_pareto_sizes_and_hypervolume(store):
    eng = store["engine"]
    recs = store_read.studies(eng)
    refs = {r.id: store_read.latest_event_detail(eng, r.id, "reference_point") for r in recs}
    values = store_read.complete_values(eng, [r.optuna_id for r in recs if r.optuna_id is not None])
    table = overview_frame(
        recs, store_read.state_counts(eng), store_read.latest_hypervolume(eng), values, refs
    ).set_index("study")
    for name in ("alpha", "beta"):
        info = store[name]
        assert (
            table.loc[name, "pareto_size"]
            == len(info.pareto_numbers)
            == len(_optuna_front(store["url"], name))
        )
        assert table.loc[name, "hv_source"] == "recorded"
        last = store_read.hypervolume_history(eng, info.study_id)["value"].iloc[-1]
        assert table.loc[name, "hypervolume"] == pytest.approx(last)
        assert table.loc[name, "trials"] == sum(info.states.values())
    assert table.loc["empty", "pareto_size"] == 0 and table.loc["empty", "trials"] == 0


def test_overview_computes_hypervolume_when_none_recorded(store):
    eng = store["engine"]
    recs = [r for r in store_read.studies(eng) if r.name == "alpha"]
    values = store_read.complete_values(eng, [recs[0].optuna_id])
    empty_hv = pd.DataFrame(columns=["study_id", "value", "n_complete", "time"])
    refs = {recs[0].id: {"point": store["alpha"].reference_point}}
    table = overview_frame(recs, store_read.state_counts(eng), empty_hv, values, refs)
    # the same value, computed from Optuna's trials with search/pareto
    study = optuna.load_study(study_name="alpha", storage=store["url"])
    dirs = ["maximize", "minimize"]
    front = _optuna_front(store["url"], "alpha")
    pts = [to_min_form(t.values, dirs) for t in study.trials if t.number in front]
    ref = to_min_form(
        [store["alpha"].reference_point[o] for o in ("accuracy", "trainable_params")], dirs
    )
    assert table.loc[0, "hv_source"] == "computed"
    assert table.loc[0, "hypervolume"] == pytest.approx(hypervolume(pts, ref))
    # and it equals the driver-style value recorded after the last COMPLETE trial
    assert table.loc[0, "hypervolume"] == pytest.approx(
        store_read.hypervolume_history(eng, store["alpha"].study_id)["value"].iloc[-1]
    )


# -- one study ---------------------------------------------------------------------------


def test_trials_frame_matches_optuna(store):
    d = _study_data(store, "alpha")
    study = optuna.load_study(study_name="alpha", storage=store["url"])
    assert len(d.trials) == len(study.trials) == 48
    by_number = d.trials.set_index("number")
    for t in study.trials:
        row = by_number.loc[t.number]
        assert row["state"] == t.state.name
        assert row["summary"] == t.user_attrs["summary"]
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert row["accuracy"] == pytest.approx(t.values[0])
            assert row["trainable_params"] == pytest.approx(t.values[1])
        else:  # no objective values: trainable_params comes from the user attribute
            assert np.isnan(row["accuracy"])
            assert row["trainable_params"] == t.user_attrs["trainable_params"]
        assert row["start"].to_pydatetime() == t.datetime_start.astimezone(timezone.utc).replace(
            tzinfo=None
        )
    assert set(d.trials.loc[~d.trials["feasible"], "number"]) == set(
        store["alpha"].infeasible_numbers
    )
    assert d.n_running == 2


def test_pareto_front_equals_search_pareto(store):
    for name in ("alpha", "beta"):
        d = _study_data(store, name)
        assert (
            list(d.front) == list(store[name].pareto_numbers) == _optuna_front(store["url"], name)
        )
        assert not set(d.front) & set(store[name].infeasible_numbers)


def test_params_decoded_like_optuna(store):
    rec = _record(store, "alpha")
    params, dists = store_read.params(store["engine"], rec.optuna_id)
    study = optuna.load_study(study_name="alpha", storage=store["url"])
    for t in study.trials[:10]:
        for k, v in t.params.items():
            got = params.loc[t.number, k]
            assert got == pytest.approx(v)
            assert isinstance(got, float) == isinstance(v, float)
    assert json.loads(dists["learning_rate"])["attributes"]["log"] is True


def test_learning_curves_fetch_only_the_primary_metric(store):
    info = store["alpha"]
    df = store_read.curves(store["engine"], info.study_id, info.primary_metric)
    assert len(df) == info.n_primary_rows
    assert list(df.columns) == ["trial_number", "step", "value"]
    assert df.groupby("trial_number")["step"].apply(lambda s: s.is_monotonic_increasing).all()
    # Optuna's intermediate values hold the same numbers
    inter = store_read.intermediate_curves(store["engine"], _record(store, "alpha").optuna_id)
    assert np.allclose(inter["value"].to_numpy(), df["value"].to_numpy())


def test_last_values_show_where_trials_stopped(store):
    info = store["alpha"]
    last = store_read.last_values(store["engine"], info.study_id, info.primary_metric).set_index(
        "trial_number"
    )
    d = _study_data(store, "alpha")
    states = dict(zip(d.trials["number"], d.trials["state"], strict=True))
    for n, row in last.iterrows():
        if states[n] == "COMPLETE":
            assert row["last_step"] == info.max_steps
        if states[n] == "PRUNED":
            assert row["last_step"] < info.max_steps
    stops = store_read.events(store["engine"], info.study_id, kinds=["stop"])
    assert len(stops) == info.states.get("PRUNED", 0)
    assert all("rung" in d and "reason" in d for d in stops["detail"])


def test_trial_detail_queries(store):
    info = store["alpha"]
    rec = _record(store, "alpha")
    d = _study_data(store, "alpha")
    failed = int(d.trials.loc[d.trials["state"] == "FAIL", "number"].iloc[0])
    attrs = store_read.trial_attributes(store["engine"], rec.optuna_id, failed)
    assert "Traceback" in attrs["traceback"]
    assert attrs["plan"]["lora"]["ranks"]
    metrics = store_read.trial_metrics(store["engine"], info.study_id, failed)
    assert {"step", "accuracy", "eval_loss", "trainable_params"} <= set(metrics.columns)
    events = store_read.events(store["engine"], info.study_id, trial_number=failed)
    assert list(events["kind"]) == ["trial_failed"]


def test_placement_of_the_front(store):
    rec = _record(store, "alpha")
    d = _study_data(store, "alpha")
    plans = store_read.user_attr(store["engine"], rec.optuna_id, "plan", list(d.front))
    assert set(plans) == set(d.front)
    table = analysis.placement_table(list(plans.values()))
    # recount by hand from the LoRA ranks
    manual: dict[tuple[int, str], list[int]] = {}
    for plan in plans.values():
        for layer, target, rank in plan["lora"]["ranks"]:
            manual.setdefault((layer, f"lora:{target}"), []).append(rank)
    got = {(r.layer, r.module): (r.count, r.mean_size) for r in table.itertuples()}
    assert got == {k: (len(v), pytest.approx(np.mean(v))) for k, v in manual.items()}
    assert table["fraction"].max() <= 1.0


# -- pure computations -------------------------------------------------------------------


def test_pareto_mask_keeps_exactly_the_undominated_points():
    rng = random.Random(3)
    for k in (2, 3, 4):
        pts = [
            [rng.choice([0.0, 1.0, 2.0, 3.0]) + rng.random() * 0.1 * (i % 2) for _ in range(k)]
            for i in range(120)
        ]
        pts += pts[:5]  # duplicates are all kept
        mask = pareto_mask(np.array(pts), chunk=16)  # blocks of candidate dominators
        brute = [i for i, p in enumerate(pts) if not any(dominates(q, p) for q in pts)]
        assert np.flatnonzero(mask).tolist() == brute == pareto_indices(pts)


def test_staircase_orders_the_2d_front():
    x = np.array([1.0, 2.0, 3.0, 2.5, 0.5])
    y = np.array([0.6, 0.7, 0.9, 0.6, 0.1])  # maximise y, minimise x
    order = analysis.staircase(x, y, "minimize", "maximize")
    assert order.tolist() == [4, 0, 1, 2]


def test_plan_placements_for_other_families():
    plan = {
        "lora": {"ranks": [[0, "query", 8], [2, "value", 4]], "alpha": None, "dora": False},
        "serial_adapter": {"sizes": [[1, 64], [3, 0]]},
        "parallel_adapter": {"layers": {"2": 32, "L4": 16}, "scaling": 4.0},
        "ia3": {"modules": [[0, "key"], [5, "ffn"]]},
        "bitfit": {"layers": [0, 1]},
        "paca": {"columns": [{"layer": 2, "target": "query", "columns": 12}]},
        "prefix": {"length": 10},
        "mystery": {"something": "else"},
        "broken": 3,
    }
    got = set(analysis.plan_placements(plan))
    assert ("lora", 0, "query", 8.0) in got and ("lora", 2, "value", 4.0) in got
    assert ("serial_adapter", 1, "serial_adapter", 64.0) in got
    assert not any(
        f == "serial_adapter" and layer == 3 for f, layer, _, _ in got
    )  # size 0: nothing placed
    assert {
        ("parallel_adapter", 2, "parallel_adapter", 32.0),
        ("parallel_adapter", 4, "parallel_adapter", 16.0),
    } <= got
    assert {("ia3", 0, "key", 1.0), ("ia3", 5, "ffn", 1.0)} <= got
    assert {("bitfit", 0, "bitfit", 1.0), ("bitfit", 1, "bitfit", 1.0)} <= got
    assert ("paca", 2, "query", 12.0) in got
    assert ("prefix", "global", "prefix", 10.0) in got
    assert ("broken", "global", "broken", 3.0) in got
    assert analysis.plan_placements("not json") == [] and analysis.plan_placements(None) == []
    table = analysis.placement_table([plan, {"lora": {"ranks": [[0, "query", 16]]}}])
    row = table[(table["layer"] == 0) & (table["module"] == "lora:query")].iloc[0]
    assert row["count"] == 2 and row["fraction"] == 1.0 and row["mean_size"] == 12.0
    assert table["layer"].iloc[-1] == "global"


def test_feasibility_and_reference_parsing():
    assert constraints_hold(None) and constraints_hold([-1.0, 0.0]) and constraints_hold("[-0.5]")
    assert not constraints_hold([0.1, -2.0]) and not constraints_hold(0.5)
    # a constraint nothing can read is not shown to hold
    assert not constraints_hold("garbage") and not constraints_hold(["x"])
    assert not constraints_hold([float("nan")]) and constraints_hold(float("nan"))  # NaN: missing
    objs = ["accuracy", "trainable_params"]
    assert analysis.parse_reference(
        {"point": {"accuracy": 0.0, "trainable_params": 1e5}}, objs
    ) == {"accuracy": 0.0, "trainable_params": 1e5}
    assert analysis.parse_reference([0.1, 2.0], objs) == {"accuracy": 0.1, "trainable_params": 2.0}
    assert analysis.parse_reference({"other": 1}, objs) is None


def test_trial_from_selection():
    sel = {
        "points": [{"curve_number": 2, "point_index": 0, "customdata": 17}],
        "point_indices": [0],
    }
    assert analysis.trial_from_selection(sel) == 17
    assert analysis.trial_from_selection({"points": [{"customdata": [5, "x"]}]}) == 5
    assert analysis.trial_from_selection({"points": [{"x": 1}]}) is None
    assert analysis.trial_from_selection(None) is None


def test_export_command_never_shows_a_password():
    cmd, note = analysis.export_command("s", 3, "sqlite:///paretune.db", "sqlite:///paretune.db")
    assert cmd == "paretune export s --trial 3 --out runs/s/trial-3" and note is None
    cmd, note = analysis.export_command(
        "s", 3, "postgresql+psycopg://bob:hunter2@db:5432/pt", "sqlite:///paretune.db"
    )
    assert "hunter2" not in cmd and '--storage "$PARETUNE_STORAGE"' in cmd and note
    cmd, _ = analysis.export_command("s", 3, "sqlite:////tmp/x.db", "sqlite:///paretune.db")
    assert cmd.endswith("--storage sqlite:////tmp/x.db")


def test_spec_view_reads_unvalidated_specs():
    raw = json.dumps(
        {
            "objectives": [{"name": "accuracy"}, "trainable_params", {"name": "latency"}],
            "search": {"max_steps": 90, "min_steps": 10, "eta": 3},
            "space": {"serial_adapter": {}},
        }
    )
    v = spec_view(raw, ["MAXIMIZE", "MINIMIZE", "MINIMIZE"])
    assert v.objectives == ("accuracy", "trainable_params", "latency")
    assert v.directions == ("maximize", "minimize", "minimize")
    assert (
        v.rungs == (10, 30, 90)
        and v.primary_metric == "accuracy"
        and v.families == ("serial_adapter",)
    )
    assert spec_view("garbage", ["MINIMIZE"]).directions == ("minimize",)


def test_charts_name_the_front_trace(store):
    d = _study_data(store, "beta")
    fig = charts.pareto_figure(
        d.complete(), "trainable_params", "accuracy", d.directions, d.front, color="train_seconds"
    )
    by_name = {t.name: t for t in fig.data}
    assert len(by_name[charts.FRONT_TRACE].x) == len(d.front)
    assert len(by_name[charts.DOMINATED_TRACE].x) == len(d.complete()) - len(d.front)
    assert set(by_name[charts.FRONT_TRACE].customdata) == set(d.front)
    assert by_name[charts.STEP_TRACE].line.shape == "hv"
    assert fig.layout.xaxis.type == "log"
    curves = store_read.curves(store["engine"], store["beta"].study_id, "accuracy")
    cfig = charts.learning_curves_figure(
        curves, {n: "PRUNED" for n in curves["trial_number"]}, [10, 30, 60], "accuracy"
    )
    assert [t.name.split(" (")[0] for t in cfig.data] == ["PRUNED"]
    assert len(cfig.layout.shapes) == 3
    # one trace for many curves: a NaN between trials
    assert np.isnan(cfig.data[0].x).sum() == curves["trial_number"].nunique() - 1


def test_importance_per_objective_and_small_study_guard(store):
    d = _study_data(store, "alpha")
    c = d.complete()
    values = c[["number", "accuracy", "trainable_params"]].set_axis(["number", "o0", "o1"], axis=1)
    imp = param_importances(
        d.params,
        d.distributions,
        values,
        ["accuracy", "trainable_params"],
        ["o0", "o1"],
        ["maximize", "minimize"],
    )
    assert set(imp) == {"accuracy", "trainable_params"}
    for v in imp.values():
        assert sum(v.values()) == pytest.approx(1.0)
        assert set(v) <= set(d.params.columns)
    with pytest.raises(TooFewTrials):
        param_importances(
            d.params,
            d.distributions,
            values.head(3),
            ["accuracy", "trainable_params"],
            ["o0", "o1"],
            ["maximize", "minimize"],
        )


# -- read-only access ----------------------------------------------------------------------


def test_readonly_engine_cannot_write(store):
    digest = hashlib.sha256(store["path"].read_bytes()).hexdigest()
    with pytest.raises(Exception, match="readonly|read-only"):
        with store["engine"].connect() as conn:
            conn.execute(text("CREATE TABLE intruder (a INTEGER)"))
            conn.commit()
    assert hashlib.sha256(store["path"].read_bytes()).hexdigest() == digest


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "absent.db"
    with pytest.raises(db.DashboardError, match="no such database file"):
        db.readonly_engine(f"sqlite:///{path}")
    assert not path.exists()


def test_explain_masks_passwords():
    url = "postgresql+psycopg://bob:hunter2@127.0.0.1:1/pt"
    eng = db.readonly_engine(url)
    with pytest.raises(Exception) as err:
        with eng.connect():
            pass
    message = db.explain(err.value, url)
    assert (
        "hunter2" not in message
        and "bob:***@127.0.0.1:1/pt" in message
        and message.startswith("cannot read storage")
    )


def test_synthetic_bulk_writer_equals_optuna_api(tmp_path):
    from datetime import datetime

    start = datetime(2026, 1, 1, 12, 0, 0)
    kwargs = {
        "n_trials": 24,
        "n_steps": 5,
        "n_running": 1,
        "infeasible_fraction": 0.3,
        "seed": 5,
        "start_time": start,
    }
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    ia = build_synthetic_study(a, "s", bulk=False, **kwargs)
    ib = build_synthetic_study(b, "s", bulk=True, **kwargs)
    assert ia == ib
    ta = optuna.load_study(study_name="s", storage=a).trials
    tb = optuna.load_study(study_name="s", storage=b).trials
    assert ta == tb and len(ta) == 24


@pytest.mark.postgres
def test_queries_on_postgres(postgres_url):
    info = build_synthetic_study(
        postgres_url,
        "pg",
        n_trials=30,
        n_steps=5,
        n_running=1,
        infeasible_fraction=0.2,
        seed=4,
        bulk=True,
    )
    eng = db.readonly_engine(postgres_url)
    try:
        rec = store_read.find_study(eng, "pg")
        counts = store_read.state_counts(eng).set_index("optuna_id").loc[rec.optuna_id]
        assert {s: int(counts[s]) for s in store_read.STATES if counts[s]} == info.states
        trials = store_read.trials(eng, rec.optuna_id, 2).rename(
            columns={"v0": "accuracy", "v1": "tp"}
        )
        assert analysis.pareto_numbers(
            trials, ["accuracy", "tp"], ["maximize", "minimize"]
        ) == list(info.pareto_numbers)
        assert len(store_read.curves(eng, rec.id, "accuracy")) == info.n_primary_rows
        with pytest.raises(Exception, match="read-only"):
            with eng.connect() as conn:
                conn.execute(text("CREATE TABLE intruder (a INTEGER)"))
    finally:
        eng.dispose()


def test_no_torch_in_dashboard():
    here = os.path.join(os.path.dirname(__file__), "..", "dashboard")
    for root, _, files in os.walk(here):
        for f in files:
            if f.endswith(".py"):
                src = open(os.path.join(root, f)).read()
                assert "import torch" not in src and "from torch" not in src, f
                assert "paretune.trainers" not in src and "paretune.kernels" not in src, f


def test_engine_module_creates_nothing(tmp_path):
    """A database without paretune tables is reported, and stays untouched."""
    path = tmp_path / "plain.db"
    eng = create_engine(f"sqlite:///{path}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE other (a INTEGER)"))
    eng.dispose()
    ro = db.readonly_engine(f"sqlite:///{path}")
    assert not store_read.has_paretune_tables(ro)
    ro.dispose()
    check = create_engine(f"sqlite:///{path}")
    with check.connect() as conn:
        names = [
            r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        ]
    check.dispose()
    assert names == ["other"]


def test_dashboard_is_one_flat_package():
    """pyproject installs ``paretune.dashboard`` as one package: no sub-packages to forget."""
    here = os.path.join(os.path.dirname(__file__), "..", "dashboard")
    nested = [
        os.path.join(root, f)
        for root, dirs, files in os.walk(here)
        if os.path.abspath(root) != os.path.abspath(here) and "__pycache__" not in root
        for f in files
        if f.endswith(".py")
    ]
    assert nested == []


def test_a_deepened_study_fronts_only_trials_at_the_new_top(tmp_path):
    """After ``resume --max-steps``: trials finished at the old top leave the front, the overview's
    Pareto size and the hypervolume; the rungs follow the study row's max_steps."""
    url = f"sqlite:///{tmp_path / 'deep.db'}"
    build_synthetic_study(url, "deep", n_trials=30, n_steps=4, seed=5)
    eng = db.readonly_engine(url)
    before = _study_data({"engine": eng}, "deep")
    old_top = before.spec.max_steps
    front_before = set(before.front)
    assert len(front_before) >= 2
    complete = before.trials[before.trials["state"] == "COMPLETE"]
    deepened = [n for n in complete["number"] if n not in front_before][:2]  # two dominated ones
    writer = create_engine(url)
    with writer.begin() as conn:
        conn.execute(
            text("UPDATE paretune_studies SET max_steps = :m WHERE name = 'deep'"),
            {"m": 2 * old_top},
        )
        for tid, number in zip(complete["trial_id"], complete["number"], strict=True):
            steps = 2 * old_top if number in deepened else old_top
            conn.execute(
                text(
                    "INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                    "VALUES (:t, 'steps', :v)"
                ),
                {"t": int(tid), "v": json.dumps(steps)},
            )
    writer.dispose()
    eng.dispose()
    eng = db.readonly_engine(url)
    after = _study_data({"engine": eng}, "deep")
    assert after.spec.max_steps == 2 * old_top and after.spec.rungs[-1] == 2 * old_top
    assert set(after.front) <= set(deepened) and after.front
    rec = store_read.find_study(eng, "deep")
    row = overview_frame(
        [rec],
        store_read.state_counts(eng),
        store_read.latest_hypervolume(eng).iloc[0:0],  # recompute from the trials
        store_read.complete_values(eng, [rec.optuna_id]),
        {},
    ).iloc[0]
    assert row["pareto_size"] == len(after.front)
    eng.dispose()
