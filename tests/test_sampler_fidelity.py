"""``search.sampler_fidelity`` in the searcher: rung models ask, learn, withdraw and survive a resume.

Drives :class:`SearchCore` without Ray on a SQLite store, as ``tests/test_searcher.py`` does.
Rungs are 1, 3 and 9 steps; a rung's model suggests once it holds 10 observations (TPE's start-up).
"""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
import pytest
import yaml
from sized_space import SIZES, sized

from paretune.search.service import lifecycle as service
from paretune.search.service.searcher import SearchCore
from paretune.search.service.trainable import ERROR_KEY
from paretune.search.store.study_store import open_store
from paretune.spaces import StudySpec, parse_spec
from paretune.spaces.errors import SpecError

RUNNING = (optuna.trial.TrialState.RUNNING,)
COMPLETE = (optuna.trial.TrialState.COMPLETE,)


def spec_data(name: str, **search: Any) -> dict[str, Any]:
    return {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [0, 4, 8]},
            "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        },
        "search": {
            "n_trials": 40,
            "min_steps": 1,
            "max_steps": 9,
            "eta": 3,
            "scheduler": "none",
            "sampler": "tpe",
            "sampler_fidelity": "highest-rung",
            "seed": 3,
            **search,
        },
    }


def parse(data: dict[str, Any]) -> Any:
    return parse_spec(yaml.safe_dump(data, sort_keys=False), f"{data['study']}.yaml")


@pytest.fixture
def stores():
    opened: list[Any] = []

    def open_(url: str) -> Any:
        store = open_store(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.dispose()


def new_core(stores: Any, url: str, name: str = "fid", **search: Any) -> SearchCore:
    ctx = service.prepare_submit(stores(url), parse(spec_data(name, **search))).ctx
    return SearchCore(ctx, driver_id="test")


def resumed_core(stores: Any, url: str, name: str = "fid") -> SearchCore:
    """A new driver on the stored study, as ``paretune resume`` builds it."""
    return SearchCore(service.open_context(stores(url), name), driver_id="resumed")


def accuracy(params: dict[str, Any], step: int) -> float:
    """A deterministic learning curve: a learning rate near 1e-3 and more adapters do better."""
    ranks = sum(v for k, v in params.items() if isinstance(v, int) and k != "seed")
    quality = 0.9 - 0.1 * abs(math.log10(params["learning_rate"]) + 3) + 0.002 * ranks
    return 0.5 + (quality - 0.5) * (1 - math.exp(-step / 3))


def result(core: SearchCore, n: int, step: int) -> dict[str, Any]:
    params = core.study.get_trials(deepcopy=False)[n].params
    acc = accuracy(params, step)
    return {"trial_number": n, "step": step, "accuracy": acc, "eval_loss": 1 - acc}


def run(core: SearchCore, n_trials: int) -> list[int]:
    """Trials one at a time; trial n trains to step 1, 3 or 9 (n % 3), reporting at each rung."""
    numbers = []
    for _ in range(n_trials):
        out = core.next_trial()
        assert isinstance(out, dict)
        n = out["trial_number"]
        last = (1, 3, 9)[n % 3]
        for step in (1, 3, 9):
            if step < last:
                core.on_result(n, result(core, n, step))
        core.on_end(n, result(core, n, last))
        numbers.append(n)
    return numbers


def observations(core: SearchCore, rung: int) -> list[tuple[str, list[float]]]:
    """The model's observations at ``rung``, as (parameters, values), in their order."""
    trials = core.asker.model_study(rung).get_trials(deepcopy=False, states=COMPLETE)
    return [(json.dumps(t.params, sort_keys=True), list(t.values)) for t in trials]


def running_models(core: SearchCore) -> int:
    return sum(
        len(core.asker.model_study(k).get_trials(deepcopy=False, states=RUNNING))
        for k in range(len(core.asker.rungs))
    )


def test_results_at_a_low_rung_make_that_rung_model_suggest(stores, sqlite_url):
    core = new_core(stores, sqlite_url)
    assert core.asker.rungs == [1, 3, 9] and core.asker.threshold == 10
    run(core, 12)
    assert [core.asker.n_observations(k) for k in range(3)] == [12, 8, 4]
    assert core.asker.model_rung() == 0  # only rung 1 holds 10 observations
    out = core.next_trial()
    n = out["trial_number"]
    assert core.asker.pending_rung(n) == 0
    model = core.asker.model_study(0).get_trials(deepcopy=False, states=RUNNING)
    asked = core.study.get_trials(deepcopy=False)[n]
    assert [t.params for t in model] == [asked.params]  # the real trial runs the model's pick
    assert asked.system_attrs["fixed_params"] == asked.params
    # the model learns the result at its rung (trainable_params filled from the plan)
    core.on_end(n, result(core, n, 1))
    last = core.asker.model_study(0).get_trials(deepcopy=False, states=COMPLETE)[-1]
    assert last.params == asked.params
    expected = [accuracy(asked.params, 1), float(out["trainable_params"])]
    assert last.values == pytest.approx(expected, abs=1e-8)  # eval_loss breaks ties (1e-9 x loss)
    assert running_models(core) == 0


def test_full_fidelity_models_only_complete_trials(stores, sqlite_url):
    core = new_core(stores, sqlite_url, sampler_fidelity="full")
    run(core, 12)
    assert core.asker.model_rung() == 2 and core.asker.n_observations(0) == 12
    complete = core.study.get_trials(deepcopy=False, states=COMPLETE)
    assert observations(core, 2) == [
        (json.dumps(t.params, sort_keys=True), list(t.values)) for t in complete
    ]
    n = core.next_trial()["trial_number"]
    assert core.asker.pending_rung(n) == 2


def test_a_trial_ending_before_its_model_rung_is_withdrawn(stores, sqlite_url):
    core = new_core(stores, sqlite_url)
    n = core.next_trial()["trial_number"]
    assert core.asker.pending_rung(n) == 2 and running_models(core) == 1  # start-up: top rung
    core.on_end(n, {"trial_number": n, "step": 1, "accuracy": 0.6, ERROR_KEY: "RuntimeError: x"})
    assert core.study.get_trials(deepcopy=False)[n].state.name == "FAIL"
    assert core.asker.pending_rung(n) is None and running_models(core) == 0
    m = core.next_trial()["trial_number"]
    assert core.interrupt_live("interrupted") == [m]
    assert running_models(core) == 0
    retry = core.next_trial()["trial_number"]  # a queued retry: no model is asked
    assert core.asker.pending_rung(retry) is None and running_models(core) == 0


def test_a_rejected_plan_is_withdrawn_from_its_model(stores, sqlite_url):
    # the head alone has 130 parameters: a cap of 131 rejects every plan with a rank above 0
    core = new_core(
        stores, sqlite_url, constraints={"max_trainable_params": 131, "max_rejections": 3}
    )
    assert core.next_trial() == "FINISHED" and core.gave_up
    failed = core.asker.model_study(2).get_trials(deepcopy=False)
    assert len(failed) == 3 and all(t.state.name == "FAIL" for t in failed)


def test_measured_constraints_reach_the_rung_models(stores, sqlite_url):
    core = new_core(stores, sqlite_url, constraints={"max_train_seconds": 1.0})
    n = core.next_trial()["trial_number"]
    assert core.asker.pending_rung(n) == 2
    core.on_result(n, {**result(core, n, 1), "train_seconds": 0.5})
    core.on_end(n, {**result(core, n, 9), "train_seconds": 5.0})
    low, top = core.asker.model_study(0).trials[-1], core.asker.model_study(2).trials[-1]
    assert list(low.system_attrs["constraints"]) == [-0.5]  # feasible at rung 1
    assert list(top.system_attrs["constraints"]) == [4.0]  # infeasible at max_steps


def test_a_resumed_core_rebuilds_the_models_and_suggests_as_the_uninterrupted_one(stores, tmp_path):
    url_a, url_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    straight = new_core(stores, url_a)
    first = new_core(stores, url_b)
    assert run(straight, 14) == run(first, 14)
    params = [t.params for t in straight.study.get_trials(deepcopy=False)]
    assert params == [t.params for t in first.study.get_trials(deepcopy=False)]  # seeded

    resumed = resumed_core(stores, url_b)
    for k in range(3):
        assert observations(resumed, k) == observations(straight, k)
    assert [resumed.asker.n_observations(k) for k in range(3)] == [14, 9, 4]
    assert resumed.asker.model_rung() == straight.asker.model_rung() == 0

    a, b = straight.next_trial(), resumed.next_trial()
    assert a["trial_number"] == b["trial_number"] == 14
    assert resumed.asker.pending_rung(14) == straight.asker.pending_rung(14) == 0
    assert a["config"] == b["config"] and a["config_hash"] == b["config_hash"]


def test_a_resumed_core_without_the_stored_results_would_suggest_otherwise(stores, tmp_path):
    """The resume test above is not vacuous: an empty model proposes something else."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    straight = new_core(stores, url)
    run(straight, 14)
    fresh = SearchCore(straight.ctx, driver_id="x")
    fresh.asker = type(fresh.asker).from_spec(fresh.spec)  # the models, not rebuilt
    assert fresh.asker.model_rung() == 2
    k, model_trial = fresh.asker.suggest(fresh._sample, 14)
    k0, model_trial0 = straight.asker.suggest(straight._sample, 14)
    assert (k, k0) == (2, 0) and model_trial.params != model_trial0.params


def test_highest_rung_validates_and_an_unknown_mode_is_one_line():
    for mode in ("highest-rung", "full"):
        data = spec_data("ok", sampler_fidelity=mode)
        assert parse(data).spec.search.sampler_fidelity == mode
    with pytest.raises(SpecError) as e:
        parse(spec_data("bad", sampler_fidelity="lowest-rung"))
    message = str(e.value)
    assert "\n" not in message and "search.sampler_fidelity" in message, message
    assert StudySpec(study="t").search.sampler_fidelity == "highest-rung"


def test_a_joined_driver_learns_from_the_other_drivers_results(stores, sqlite_url):
    """Two drivers on one study (``resume --join``): each one's rung models and scheduler rungs
    take the other's results, stored after it started, and its own ones once."""
    from paretune.search.service.driver import trial_scheduler  # noqa: PLC0415

    def with_params(core: SearchCore, n: int, step: int) -> dict[str, Any]:
        """A result as the trainable reports it: the parameter count is an objective."""
        attrs = core.study.get_trials(deepcopy=False)[n].user_attrs
        return {**result(core, n, step), "trainable_params": float(attrs["trainable_params"])}

    first = new_core(stores, sqlite_url, scheduler="mo-asha")
    joined = resumed_core(stores, sqlite_url)  # started before any result was stored
    decisions: list[dict[str, Any]] = []
    scheduler = trial_scheduler(joined.ctx, decisions.append, [], joined.shared)
    for _ in range(6):  # as run(): reach step 1: all six; step 3: four; step 9: two
        n = first.next_trial()["trial_number"]
        last = (1, 3, 9)[n % 3]
        for step in (1, 3, 9):
            if step < last:
                first.on_result(n, with_params(first, n, step))
        first.on_end(n, with_params(first, n, last))
    assert [joined.asker.n_observations(k) for k in range(3)] == [0, 0, 0]

    out = joined.next_trial()  # polls the store before its models are asked
    assert [joined.asker.n_observations(k) for k in range(3)] == [6, 4, 2]
    n = out["trial_number"]
    mine = with_params(joined, n, 1)
    joined.on_result(n, mine)

    class RayTrial:
        trial_id = "ray-trial"

    scheduler.on_trial_result(None, RayTrial(), mine)
    assert decisions[-1]["trial_number"] == n
    assert decisions[-1]["n_at_rung"] == 7  # ranked among the first driver's six results
    assert joined.shared.poll(force=True) == []  # its own result never comes back by polling
    assert joined.asker.n_observations(0) == 7
    assert [first.asker.n_observations(k) for k in range(3)] == [6, 4, 2]
    first.shared.poll(force=True)  # and the first driver learns the joined one's result
    assert first.asker.n_observations(0) == 7


# -- a fitted model picks, among its proposals, the one that fills a gap in trainable_params ------


def sized_asker(objectives: list[str], **kw: Any) -> Any:
    from paretune.search.algorithms.fidelity import FidelityAwareAsker

    asker = FidelityAwareAsker(
        rungs=[9],
        objectives=objectives,
        directions=["maximize", "minimize"][: len(objectives)],
        seed=5,
        known=lambda drawn: float(drawn["size"]),
        **kw,
    )
    dists = {
        "size": optuna.distributions.CategoricalDistribution(SIZES),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    }
    for i in range(12):  # the small end only: sizes 10 and 100 observed
        params = {"size": SIZES[i % 2], "lr": 1e-3 * (1 + i % 5)}
        trial = optuna.trial.create_trial(params=params, distributions=dists, value=0.0)
        trial.number = i
        values = {"accuracy": 0.6 + 0.01 * i, "trainable_params": float(params["size"])}
        asker.observe(trial, 9, values)
    return asker


def test_a_fitted_model_proposes_several_and_keeps_the_one_farthest_in_trainable_params():
    asker = sized_asker(["accuracy", "trainable_params"], condition_floats=False)
    assert asker.candidates == 8
    k, chosen = asker.suggest(sized, number=12)
    study = asker.model_study(k)
    proposals = study.get_trials(deepcopy=False)[12:]
    assert len(proposals) == 8
    assert [t.state for t in proposals].count(optuna.trial.TrialState.RUNNING) == 1
    assert {t.state for t in proposals if t.number != chosen.number} == {
        optuna.trial.TrialState.FAIL
    }

    def gap(size: float, taken: tuple[float, ...]) -> float:
        return min(abs(math.log1p(size) - math.log1p(s)) for s in taken)

    observed = (10, 100)
    assert gap(chosen.params["size"], observed) == max(
        gap(t.params["size"], observed) for t in proposals
    )
    assert gap(chosen.params["size"], observed) > 0  # a size away from the observed ones
    # the next ask counts the pending pick as taken too
    _, second = asker.suggest(sized, number=13)
    assert second.user_attrs["known_objective"] == float(second.params["size"])
    taken = (*observed, chosen.params["size"])
    again = study.get_trials(deepcopy=False)[20:]
    assert len(again) == 8
    assert gap(second.params["size"], taken) == max(gap(t.params["size"], taken) for t in again)


def test_one_proposal_per_ask_without_a_known_objective_or_with_one_candidate():
    for asker in (sized_asker(["accuracy"]), sized_asker(["accuracy", "trainable_params"], candidates=1)):  # fmt: skip
        asker.suggest(sized, number=12)
        assert len(asker.model_study(0).get_trials(deepcopy=False)) == 13
    # the first proposal is the one a single ask makes: the seeds of earlier releases stand
    one = sized_asker(["accuracy", "trainable_params"], candidates=1)
    many = sized_asker(["accuracy", "trainable_params"], condition_floats=False)
    _, single = one.suggest(sized, number=12)
    many.suggest(sized, number=12)
    assert many.model_study(0).get_trials(deepcopy=False)[12].params == single.params
