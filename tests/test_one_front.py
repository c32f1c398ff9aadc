"""One front everywhere: ``paretune pareto`` (table, JSON, CSV), the report, the hypervolume
history and the dashboard name the same trials, whatever the study holds: infeasible, PRUNED,
deepened-away and unreadable-constraint trials that would all dominate the true front."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from synthetic_study import build_synthetic_study
from typer.testing import CliRunner

from paretune.dashboard.db import readonly_engine
from paretune.dashboard.overview import overview_frame
from paretune.dashboard.study_data import build_study_data
from paretune.search.algorithms.hypervolume import HypervolumeRecorder
from paretune.search.algorithms.pareto import front_trials, hypervolume, to_min_form
from paretune.search.cli import report
from paretune.search.cli.app import app
from paretune.search.store import read as store_read
from paretune.search.store.study_store import StudyStore
from paretune.spaces import parse_spec


def crafted(values, steps, state=TrialState.COMPLETE, **attrs):
    return optuna.trial.create_trial(
        params={"learning_rate": 1e-3},
        distributions={"learning_rate": FloatDistribution(1e-4, 3e-3, log=True)},
        values=list(values) if values is not None else None,
        state=state,
        user_attrs={"steps": steps, "trainable_params": values[1] if values else 5, **attrs},
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('front')}/front.db"
    info = build_synthetic_study(
        url, "front", n_trials=12, fail_fraction=0.0, prune_fraction=0.3, seed=5
    )
    top = info.max_steps
    optuna_study = optuna.load_study(study_name="front", storage=url)
    n = len(optuna_study.trials)
    extra = {
        n: crafted((0.999, 10), top, constraints=[0.5]),  # infeasible
        n + 1: crafted(None, top // 3, state=TrialState.PRUNED),
        n + 2: crafted((0.998, 11), top // 2),  # completed below max_steps (deepened away)
        n + 3: crafted((0.997, 12), top, constraints="not a number"),  # unreadable: infeasible
        n + 4: crafted((0.5, 13), top, constraints=[-1.0]),  # feasible, the smallest: on the front
    }
    for t in extra.values():
        optuna_study.add_trial(t)
    return url, info, n


def expected_front(url: str, info) -> list[int]:
    """The front by the definition, from Optuna's own view of the study."""
    trials = optuna.load_study(study_name="front", storage=url).trials

    def eligible(t) -> bool:
        cons = t.user_attrs.get("constraints")
        ok = cons is None or (isinstance(cons, list) and all(float(c) <= 0 for c in cons))
        steps = t.user_attrs.get("steps")  # the synthetic trials do not say: they count
        full = steps is None or steps >= info.max_steps
        return t.state == TrialState.COMPLETE and ok and full

    pool = [t for t in trials if eligible(t)]
    pts = {t.number: to_min_form(t.values, info.directions) for t in pool}

    def dominated(p):
        return any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in pts.values())

    return sorted(k for k, p in pts.items() if not dominated(p))


def test_every_surface_names_the_same_front(study):
    url, info, n = study
    expected = expected_front(url, info)
    assert n + 4 in expected and not {n, n + 2, n + 3} & set(expected)
    assert len(expected) >= 2  # the crafted member leaves synthetic trials on the front too

    runner = CliRunner()
    rows = json.loads(
        runner.invoke(app, ["pareto", "front", "--storage", url, "--format", "json"]).stdout
    )
    assert sorted(r["trial"] for r in rows) == expected
    text = runner.invoke(app, ["pareto", "front", "--storage", url, "--format", "csv"]).stdout
    assert sorted(int(r[0]) for r in list(csv.reader(io.StringIO(text)))[1:]) == expected
    table = runner.invoke(app, ["pareto", "front", "--storage", url]).stdout
    listed = [  # the table's rows: "│  3 │   0.7856 │ ..."
        int(cells[1])
        for line in table.splitlines()
        if len(cells := line.split("│")) > 2 and cells[1].strip().isdigit()
    ]
    assert sorted(listed) == expected

    store = StudyStore(url)
    try:
        trials = optuna.load_study(study_name="front", storage=url).trials
        assert [t.number for t in front_trials(trials, info.directions, info.max_steps)] == expected
        stored = store.find_study("front")
        assert report.study_row(store, stored)["pareto_size"] == len(expected)
        spec = parse_spec(stored.spec_yaml).spec
        recorder = HypervolumeRecorder(store, info.study_id, spec, max_params=10**9)
        volume, _ = recorder.value(trials)
        point = recorder.reference(trials)
        reference = to_min_form([point[o] for o in info.objectives], info.directions)
        by_number = {t.number: t for t in trials}
        assert volume == pytest.approx(
            hypervolume(
                [to_min_form(by_number[k].values, info.directions) for k in expected], reference
            )
        )
    finally:
        store.engine.dispose()

    engine = readonly_engine(url)
    rec = store_read.find_study(engine, "front")
    data = build_study_data(
        rec,
        store_read.trials(engine, rec.optuna_id, len(info.objectives)),
        *store_read.params(engine, rec.optuna_id),
        None,
        store_read.latest_event_detail(engine, rec.id, "reference_point"),
    )
    assert sorted(data.front) == expected
    table = overview_frame(
        [rec],
        store_read.state_counts(engine),
        store_read.latest_hypervolume(engine),
        store_read.complete_values(engine, [rec.optuna_id]),
        {rec.id: store_read.latest_event_detail(engine, rec.id, "reference_point")},
    )
    assert int(table.loc[0, "pareto_size"]) == len(expected)
    engine.dispose()
