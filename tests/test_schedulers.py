"""Multi-objective multi-fidelity schedulers: rung decisions, Hyperband brackets, resume, Ray Tune.

Objectives throughout: accuracy (maximised) and trainable_params (minimised, known before
training), as in a default study spec.
"""

from __future__ import annotations

import collections
import os
import pickle
import random
import sys
import tempfile
from typing import Any

import pytest

from paretune.search.algorithms.schedulers import (
    FullFidelity,
    MOHyperband,
    MOSuccessiveHalving,
    ParetoTrialScheduler,
    hyperband_weights,
    make_core,
    make_trial_scheduler,
)
from paretune.spaces import StudySpec

OBJ = ("accuracy", "trainable_params")
DIRS = ("maximize", "minimize")
RUNGS = [1, 3, 9]


def result(acc: float, params: float) -> dict[str, float]:
    return {"accuracy": acc, "trainable_params": params, "eval_loss": 0.3}


def asha(**kw: Any) -> MOSuccessiveHalving:
    return MOSuccessiveHalving(RUNGS, OBJ, DIRS, eta=3, **kw)


def spec(scheduler: str = "mo-hyperband", **search: Any) -> StudySpec:
    return StudySpec(
        study="t",
        search={"scheduler": scheduler, "min_steps": 1, "max_steps": 9, "eta": 3, **search},
    )


# -- successive halving at one rung ------------------------------------------------------------


def test_the_first_trial_at_a_rung_goes_on() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    assert core.on_result(0, 1, result(0.1, 5000)) == "continue"
    assert decisions == [
        {
            "trial_number": 0,
            "rung": 1,
            "rank": 0,
            "n_at_rung": 1,
            "action": "promote",
            "reason": "first_at_rung",
            "bracket": 0,
            "keep": 1,
        }
    ]


def test_a_dominated_trial_stops_and_a_non_dominated_one_goes_on() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    core.on_result(0, 1, result(0.70, 1000))
    core.on_result(1, 1, result(0.60, 500))
    core.on_result(2, 1, result(0.80, 3000))
    # dominated by all three: last of four, keep = ceil(4 / 3) = 2
    assert core.on_result(3, 1, result(0.55, 3500)) == "stop"
    assert decisions[-1]["action"] == "stop" and decisions[-1]["reason"] == "outranked"
    assert decisions[-1]["rank"] == 3 and decisions[-1]["keep"] == 2
    # dominates every other result: first of five
    assert core.on_result(4, 1, result(0.90, 400)) == "continue"
    assert decisions[-1]["action"] == "promote" and decisions[-1]["rank"] == 0


def test_a_trial_known_cheap_is_judged_on_its_parameter_count_too() -> None:
    core = asha()
    for key, acc in enumerate((0.80, 0.81, 0.82, 0.83, 0.84)):
        core.on_result(key, 1, result(acc, 100_000))
    # the least accurate so far, but 100x cheaper: non-dominated, so it is not stopped
    assert core.on_result(9, 1, result(0.60, 1_000)) == "continue"
    # the same accuracy at the same cost as the others: dominated, stopped
    assert core.on_result(10, 1, result(0.60, 100_000)) == "stop"


def test_the_epsilon_net_spreads_promotions_along_the_front() -> None:
    core = asha()
    # nine non-dominated trials on a line: accuracy rises with the parameter count
    history = [(k, 1, result(0.5 + 0.05 * k, 1000 + 1000 * k)) for k in range(9)]
    core.rebuild(history)
    promoted = {k for k in range(9) if core.decide(k, 0)["action"] == "promote"}
    # keep = 3: both ends of the front and its middle, not three neighbours
    assert promoted == {0, 4, 8}


def outranked_at_the_first_rung(core: Any) -> dict[str, float]:
    """Four results at rung 1 that put a fifth, (0.50, 2,500), outside the top third."""
    for key, (acc, params) in enumerate([(0.70, 1000), (0.60, 500), (0.80, 3000), (0.65, 900)]):
        core.on_result(key, 1, result(acc, params))
    return result(0.50, 2500)


def test_an_outranked_trial_no_complete_trial_dominates_goes_on() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    # one complete trial, cheap and weak: it dominates nothing at (0.50, 2,500)
    core.on_result(9, 9, result(0.45, 400))
    late = outranked_at_the_first_rung(core)
    assert core.on_result(5, 1, late) == "continue"
    assert decisions[-1]["reason"] == "undominated_by_complete"
    assert decisions[-1]["rank"] >= decisions[-1]["keep"]  # the top third alone would stop it


def test_an_outranked_trial_a_complete_trial_dominates_stops() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    core.on_result(9, 9, result(0.55, 2000))  # better and cheaper than (0.50, 2,500)
    assert core.on_result(5, 1, outranked_at_the_first_rung(core)) == "stop"
    assert decisions[-1]["reason"] == "outranked"


def test_without_complete_trials_or_with_the_rule_off_the_top_third_decides() -> None:
    for core in (asha(), asha(finish_undominated=False)):
        if not core.finish_undominated:
            core.on_result(9, 9, result(0.45, 400))
        assert core.on_result(5, 1, outranked_at_the_first_rung(core)) == "stop"


def test_equal_accuracies_at_a_rung_are_ordered_by_eval_loss() -> None:
    """Early rungs often hold only majority-class accuracies: the loss, not size alone, decides."""
    core = asha()
    small = {"accuracy": 0.672, "trainable_params": 2306, "eval_loss": 0.64}
    large = {"accuracy": 0.672, "trainable_params": 74498, "eval_loss": 0.58}
    assert core.on_result(0, 1, small) == "continue"  # first at the rung
    assert core.on_result(1, 1, large) == "continue"  # learns faster: not dominated by size
    slower = {"accuracy": 0.672, "trainable_params": 90000, "eval_loss": 0.66}
    assert core.on_result(2, 1, slower) == "stop"  # bigger and worse than the small one
    # an accuracy higher by one example still wins whatever the losses
    better = {"accuracy": 0.674, "trainable_params": 2000, "eval_loss": 9.0}
    core.on_result(3, 1, better)
    ranked = asha()
    for n, r in enumerate((large, better)):
        ranked.on_result(n, 1, r)
    assert ranked.on_result(2, 1, {**large, "eval_loss": 0.01}) == "stop"  # dominated by better


def test_without_eval_loss_equal_accuracies_fall_back_on_size() -> None:
    core = asha()
    core.on_result(0, 1, {"accuracy": 0.672, "trainable_params": 2306})
    assert core.on_result(1, 1, {"accuracy": 0.672, "trainable_params": 74498}) == "stop"


def test_rung_values_nudge_only_accuracy_like_objectives() -> None:
    from paretune.search.algorithms.fidelity import rung_values

    objectives = ["accuracy", "trainable_params"]
    values = {"accuracy": 0.5, "trainable_params": 100.0, "eval_loss": 0.7}
    nudged = rung_values(values, objectives)
    assert nudged is not None and nudged[1] == 100.0
    assert 0.5 - 1e-6 < nudged[0] < 0.5
    assert rung_values({**values, "eval_loss": float("nan")}, objectives) == [0.5, 100.0]
    with_loss = ["accuracy", "eval_loss"]
    assert rung_values(values, with_loss) == [0.5, 0.7]  # the loss is an objective: no nudge
    assert rung_values({"accuracy": 0.5}, objectives) is None


def test_complete_trials_of_every_hyperband_bracket_count() -> None:
    core = MOHyperband(RUNGS, OBJ, DIRS, eta=3, seed=0)
    by_bracket: dict[int, list[int]] = collections.defaultdict(list)
    for key in range(200):
        by_bracket[core.bracket_of(key)].append(key)
    last, first = by_bracket[len(RUNGS) - 1], by_bracket[0]
    core.on_result(last[0], 9, result(0.55, 2000))  # complete, in the full-fidelity bracket
    points = [(0.70, 1000), (0.60, 500), (0.80, 3000), (0.65, 900)]
    for key, (acc, params) in zip(first[:4], points, strict=True):
        core.on_result(key, 1, result(acc, params))
    assert core.on_result(first[4], 1, result(0.50, 2500)) == "stop"  # dominated by it
    assert core.on_result(first[5], 1, result(0.56, 2500)) == "continue"  # not dominated


def test_max_steps_ends_a_trial_as_complete() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    assert core.on_result(0, 1, result(0.5, 100)) == "continue"
    assert core.on_result(0, 3, result(0.6, 100)) == "continue"
    assert core.on_result(0, 9, result(0.7, 100)) == "stop"
    assert decisions[-1]["reason"] == "max_steps" and decisions[-1]["rung"] == 9
    assert core.on_result(0, 12, result(0.7, 100)) == "stop"  # past max_steps: still ends
    assert len(decisions) == 3


def test_results_off_the_rungs_or_incomplete_never_decide() -> None:
    decisions: list[dict[str, Any]] = []
    core = asha(on_decision=decisions.append)
    core.on_result(0, 1, result(0.9, 10))
    assert core.on_result(1, 0.5, result(0.1, 10**6)) == "continue"  # below the first rung
    assert core.on_result(1, 1, {"accuracy": 0.1}) == "continue"  # an objective missing
    assert core.on_result(0, 2, result(0.1, 10**6)) == "continue"  # rung 1 decided already
    assert len(decisions) == 1


def test_full_fidelity_runs_every_trial_to_max_steps() -> None:
    core = FullFidelity(RUNGS, OBJ, DIRS)
    assert [core.on_result(0, s, result(0.1, 10**6)) for s in RUNGS] == [
        "continue",
        "continue",
        "stop",
    ]


# -- hyperband ---------------------------------------------------------------------------------


def test_hyperband_weights_are_the_trials_each_bracket_would_start() -> None:
    assert hyperband_weights(4, 3) == [27, 12, 6, 4]
    assert hyperband_weights(3, 3) == [9, 5, 3]
    assert hyperband_weights(1, 3) == [1]


def test_bracket_assignment_is_seeded_and_follows_the_weights() -> None:
    rungs = [1, 3, 9, 27]
    a = MOHyperband(rungs, OBJ, DIRS, eta=3, seed=7)
    b = MOHyperband(rungs, OBJ, DIRS, eta=3, seed=7)
    c = MOHyperband(rungs, OBJ, DIRS, eta=3, seed=8)
    keys = range(4900)
    assert [a.bracket_of(k) for k in keys] == [b.bracket_of(k) for k in reversed(keys)][::-1]
    assert [a.bracket_of(k) for k in keys] != [c.bracket_of(k) for k in keys]
    counts = collections.Counter(a.bracket_of(k) for k in keys)
    for s, weight in enumerate([27, 12, 6, 4]):
        assert abs(counts[s] - 100 * weight) < 4 * (100 * weight) ** 0.5


def test_a_bracket_starts_deciding_at_its_own_rung() -> None:
    core = MOHyperband(RUNGS, OBJ, DIRS, eta=3, seed=0)
    by_bracket: dict[int, int] = {}
    for key in range(200):
        by_bracket.setdefault(core.bracket_of(key), key)
    assert set(by_bracket) == {0, 1, 2}
    # everyone reports at every rung; only a bracket's own rungs decide
    for s, key in by_bracket.items():
        decisions: list[dict[str, Any]] = []
        core.on_decision = decisions.append
        for step in RUNGS:
            core.on_result(key, step, result(0.5, 100))
        assert [d["rung"] for d in decisions] == RUNGS[s:]
        assert {d["bracket"] for d in decisions} == {s}
    assert make_core(spec("mo-hyperband", seed=3)).seed == 3


def test_the_startups_canonical_trials_train_to_max_steps_whatever_their_draw() -> None:
    """A mixed study's first trials (one canonical configuration per family) are never stopped
    at a rung: a family's one sure try is not judged on a low rung's result."""
    mixed = StudySpec(
        study="t",
        space={"preset": "mixed"},
        search={"min_steps": 1, "max_steps": 9, "eta": 3},
    )
    core = make_core(mixed)
    n_families = len(list(mixed.space.enabled_families()))
    assert n_families >= 5 and core.full_fidelity == set(range(n_families))
    drawn = MOHyperband(RUNGS, OBJ, DIRS, eta=3, seed=mixed.search.seed)
    lowest = [k for k in range(n_families) if drawn.bracket_of(k) == 0]
    assert lowest  # without the rule some canonical trial would decide at the first rung
    for key in range(30, 36):  # later trials, in the first bracket, fill the first rung
        if core.bracket_of(key) == 0:
            core.on_result(key, 1, result(0.9, 10))
    decisions: list[dict[str, Any]] = []
    core.on_decision = decisions.append
    for step in RUNGS:  # dominated at every rung, and still trained on
        expected = "stop" if step == RUNGS[-1] else "continue"
        assert core.on_result(lowest[0], step, result(0.1, 1000)) == expected
    assert [(d["rung"], d["reason"]) for d in decisions] == [(9, "max_steps")]
    assert core.bracket_of(n_families) == drawn.bracket_of(n_families)  # the rest: drawn
    # without the start-up (no space.combine) every trial is drawn
    plain = make_core(spec("mo-hyperband"))
    assert plain.full_fidelity == frozenset()


def test_a_full_fidelity_bracket_never_stops_a_trial_early() -> None:
    core = MOHyperband(RUNGS, OBJ, DIRS, eta=3, seed=0)
    key = next(k for k in range(100) if core.bracket_of(k) == 2)
    core.rebuild([(k, 9, result(0.9, 10)) for k in range(1000, 1010) if core.bracket_of(k) == 2])
    assert [core.on_result(key, s, result(0.0, 10**6)) for s in RUNGS] == [
        "continue",
        "continue",
        "stop",
    ]


# -- resume ------------------------------------------------------------------------------------


def stream(core: Any, n_trials: int, seed: int) -> list[tuple[int, int, dict[str, float], str]]:
    """Trials one after another, each reporting at every rung until the core stops it."""
    rng = random.Random(seed)
    out = []
    for key in range(n_trials):
        quality, params = rng.random(), rng.randint(1, 100) * 1000
        for step in RUNGS:
            values = result(quality * step / 9 + rng.gauss(0, 0.02), params)
            action = core.on_result(key, step, values)
            out.append((key, step, values, action))
            if action == "stop":
                break
    return out


@pytest.mark.parametrize("scheduler", ["mo-asha", "mo-hyperband"])
def test_resume_rebuilds_the_rungs_and_decides_as_an_uninterrupted_run(scheduler: str) -> None:
    full = stream(make_core(spec(scheduler)), 80, seed=1)
    assert {a for *_, a in full} == {"continue", "stop"}
    for cut in (17, len(full) // 2, len(full) - 5):
        history = [(k, s, v) for k, s, v, _ in full[:cut]]
        random.Random(cut).shuffle(history)  # the store's order must not matter
        decisions: list[dict[str, Any]] = []
        resumed = make_trial_scheduler(spec(scheduler), decisions.append, history)
        assert isinstance(resumed, ParetoTrialScheduler)
        assert decisions == []  # rebuilding decides nothing
        after = [resumed.core.on_result(k, s, v) for k, s, v, _ in full[cut:]]
        assert after == [a for *_, a in full[cut:]]


def test_resume_without_history_would_decide_differently() -> None:
    # guards the test above: a scheduler that forgot the rungs gives other answers
    full = stream(make_core(spec("mo-asha")), 80, seed=1)
    cut = len(full) // 2
    fresh = make_core(spec("mo-asha"))
    after = [fresh.on_result(k, s, v) for k, s, v, _ in full[cut:]]
    assert after != [a for *_, a in full[cut:]]


def test_a_pickled_core_keeps_its_rungs_and_drops_the_callback() -> None:
    core = make_core(spec("mo-hyperband"), print)
    stream(core, 20, seed=2)
    copy = pickle.loads(pickle.dumps(core))
    assert copy.on_decision is None
    assert [b.records for b in copy.brackets] == [b.records for b in core.brackets]


@pytest.mark.parametrize("scheduler", ["mo-asha", "mo-hyperband"])
def test_the_spec_turns_the_finishing_rule_off(scheduler: str) -> None:
    def brackets(core: Any) -> list[MOSuccessiveHalving]:
        return core.brackets if isinstance(core, MOHyperband) else [core]

    assert all(b.finish_undominated for b in brackets(make_core(spec(scheduler))))
    off = make_core(spec(scheduler, finish_undominated=False))
    assert not any(b.finish_undominated for b in brackets(off))


def test_make_core_builds_the_named_scheduler() -> None:
    assert isinstance(make_core(spec("mo-asha")), MOSuccessiveHalving)
    assert isinstance(make_core(spec("mo-hyperband")), MOHyperband)
    assert isinstance(make_core(spec("none")), FullFidelity)


# -- samplers: the constant liar -----------------------------------------------------------------


def _space(trial: Any) -> tuple[Any, ...]:
    return (
        trial.suggest_categorical("a", [0, 4, 8, 16]),
        trial.suggest_categorical("b", [0, 4, 8, 16]),
        trial.suggest_categorical("target", ["query", "value"]),
        trial.suggest_int("layers", 1, 4),
    )


def _concurrent_asks(sampler: Any) -> list[tuple[Any, ...]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(DIRS), sampler=sampler)
    for _ in range(16):
        trial = study.ask()
        a, b, target, layers = _space(trial)
        study.tell(trial, [a + b + 3 * (target == "value") - layers, a * b + layers])
    pending = [study.ask() for _ in range(8)]  # eight asks before any tell
    return [_space(t) for t in pending]


@pytest.mark.parametrize("seed", range(3))
def test_tpe_concurrent_asks_do_not_repeat_configurations(seed: int) -> None:
    import optuna

    from paretune.search.algorithms.samplers import make_sampler

    asked = _concurrent_asks(make_sampler("tpe", seed=seed))
    assert len(set(asked)) == len(asked)
    # without the constant liar the same state gives repeats: the check above has teeth
    plain = optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=10, constant_liar=False
    )
    repeated = _concurrent_asks(plain)
    assert len(set(repeated)) < len(repeated)


# -- the Ray Tune wrapper, end to end ----------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
        )
    yield ray
    if started:
        ray.shutdown()


N_RAY_TRIALS = 12


def _values(number: int, step: int) -> dict[str, float]:
    # each later trial is worse and costlier: dominated by every earlier one at every rung
    return result((1.0 - number / 20) * step / 9, 1000.0 + 100 * number)


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    for step in RUNGS:
        tune.report(
            {
                "trial_number": config["trial_number"],
                "step": step,
                **_values(config["trial_number"], step),
            }
        )


def test_ray_tune_runs_the_scheduler_end_to_end(ray_local: Any, tmp_path: Any) -> None:
    from ray import tune

    study = spec("mo-hyperband", seed=0)
    decisions: list[dict[str, Any]] = []
    scheduler = make_trial_scheduler(study, decisions.append)
    tuner = tune.Tuner(
        _trainable,
        param_space={"trial_number": tune.grid_search(list(range(N_RAY_TRIALS)))},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, max_concurrent_trials=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="e2e", verbose=0),
    )
    grid = tuner.fit()
    last_step = {r.metrics["trial_number"]: r.metrics["step"] for r in grid}
    assert len(last_step) == N_RAY_TRIALS
    # the same results through the plain core give the same ends
    core = make_core(study)
    expected = {}
    for number in range(N_RAY_TRIALS):
        for step in RUNGS:
            expected[number] = step
            if core.on_result(number, step, _values(number, step)) == "stop":
                break
    assert last_step == expected
    assert 9 in last_step.values() and min(last_step.values()) < 9  # completed and stopped early
    stopped = {
        d["trial_number"] for d in decisions if d["action"] == "stop" and d["reason"] != "max_steps"
    }
    assert stopped == {n for n, s in last_step.items() if s < 9}


# -- learning from partial results -----------------------------------------------------------------


def _asker(mode: str = "highest-rung", **kw: Any) -> Any:
    from paretune.search.algorithms.fidelity import FidelityAwareAsker

    return FidelityAwareAsker(rungs=RUNGS, objectives=OBJ, directions=DIRS, seed=0, mode=mode, **kw)


def _real_study() -> Any:
    import optuna

    from paretune.search.algorithms.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=list(DIRS), sampler=make_sampler("tpe", seed=0))


def _run(asker: Any, study: Any, n: int, last_step: Any) -> list[Any]:
    """n trials asked through ``asker``, each reporting up to ``last_step(number)``."""
    trials = []
    for _ in range(n):
        trial = asker.ask(study, _space)
        a, b, target, layers = _space(trial)
        for step in RUNGS:
            if step > last_step(trial.number):
                break
            asker.observe(trial, step, result((a + b) / 32 * step / 9, 1000 * (a + b) + layers))
        asker.finish(trial.number)
        trials.append(trial)
    return trials


def test_rung_at_counts_a_step_for_the_highest_rung_reached() -> None:
    from paretune.search.algorithms.fidelity import rung_at

    assert [rung_at(RUNGS, s) for s in (0, 1, 2, 3, 8, 9, 12)] == [None, 0, 0, 1, 1, 2, 2]


def test_the_model_moves_up_the_rungs_as_observations_arrive() -> None:
    asker = _asker(min_observations=4)
    study = _real_study()
    assert asker.model_rung() == 2  # nothing anywhere: the top rung's start-up sampling
    _run(asker, study, 5, lambda n: 1)  # five results at rung 1 only
    assert [asker.n_observations(k) for k in range(3)] == [5, 0, 0]
    assert asker.model_rung() == 0
    _run(asker, study, 4, lambda n: 3)
    assert asker.model_rung() == 1
    _run(asker, study, 4, lambda n: 9)
    assert asker.model_rung() == 2
    full = _asker(mode="full", min_observations=4)
    _run(full, _real_study(), 6, lambda n: 3)
    assert full.model_rung() == 2 and full.n_observations(1) == 6  # full ignores lower rungs


def test_asked_parameters_go_into_the_real_study_and_the_model_learns_at_each_rung() -> None:
    import optuna

    running_state = (optuna.trial.TrialState.RUNNING,)
    asker = _asker(min_observations=3)
    study = _real_study()
    _run(asker, study, 3, lambda n: 3)
    trial = asker.ask(study, _space)
    _space(trial)
    assert asker.pending_rung(trial.number) == 1  # rung 3 steps holds 3 observations
    model = asker.model_study(1)
    assert [t.params for t in model.get_trials(states=running_state)] == [trial.params]
    asker.observe(trial, 1, result(0.3, 500))  # rung 0: a new observation there
    assert asker.model_study(0).trials[-1].values == pytest.approx(
        [0.3, 500]
    )  # eval_loss 0.3 nudges 1e-9
    assert len(model.get_trials(states=running_state)) == 1  # still waiting for rung 1
    asker.observe(trial, 3, result(0.6, 500))
    asker.observe(trial, 3, result(0.9, 500))  # a second result at the same rung is ignored
    assert model.get_trials(states=running_state) == []
    assert (
        model.trials[-1].values == pytest.approx([0.6, 500])
        and model.trials[-1].params == trial.params
    )
    asker.finish(trial.number)
    assert asker.pending_rung(trial.number) is None
    assert len(study.trials) == 4  # the real study holds the asked trials and nothing else


def test_a_trial_stopped_below_its_model_rung_is_withdrawn_from_that_model() -> None:
    import optuna

    asker = _asker(min_observations=3)
    study = _real_study()
    _run(asker, study, 3, lambda n: 9)
    trial = asker.ask(study, _space)
    _space(trial)
    assert asker.pending_rung(trial.number) == 2
    asker.observe(trial, 1, result(0.2, 500))
    asker.finish(trial.number)
    states = [t.state for t in asker.model_study(2).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert optuna.trial.TrialState.RUNNING not in states


def test_waiting_trials_go_first_and_no_model_is_asked() -> None:
    asker = _asker()
    study = _real_study()
    study.enqueue_trial({"a": 4, "b": 8, "target": "value", "layers": 2})
    trial = asker.ask(study, _space)
    assert _space(trial) == (4, 8, "value", 2)
    assert asker.pending_rung(trial.number) is None


def test_concurrent_asks_through_the_rung_model_do_not_repeat() -> None:
    asker = _asker(min_observations=10)
    study = _real_study()
    _run(asker, study, 16, lambda n: 3)
    assert asker.model_rung() == 1
    pending = [asker.ask(study, _space) for _ in range(8)]
    asked = [_space(t) for t in pending]
    assert len(set(asked)) == len(asked)


def test_rebuild_refills_the_rung_models_from_the_store() -> None:
    import optuna

    asker = _asker(min_observations=3)
    study = _real_study()
    trials = _run(asker, study, 12, lambda n: RUNGS[n % 3])
    for t in trials:
        if t.number % 3 == 2:
            study.tell(t, [0.5, 1000.0])
        else:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
    history = []
    for t in study.trials:
        a, b = t.params["a"], t.params["b"]
        for step in RUNGS[: t.number % 3 + 1]:
            history.append(
                (
                    t.number,
                    step,
                    result((a + b) / 32 * step / 9, 1000 * (a + b) + t.params["layers"]),
                )
            )
    rebuilt = _asker(min_observations=3)
    rebuilt.rebuild(history, study.get_trials(deepcopy=False))
    assert (
        [rebuilt.n_observations(k) for k in range(3)]
        == [asker.n_observations(k) for k in range(3)]
        == [12, 8, 4]
    )
    assert rebuilt.model_rung() == asker.model_rung() == 2


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_samplers_are_built_without_deprecated_arguments(name):
    import warnings  # noqa: PLC0415

    from paretune.search.algorithms.samplers import make_sampler  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # Optuna 5 deprecations are FutureWarnings
        make_sampler(name, seed=0)
