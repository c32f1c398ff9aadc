"""The searcher's logic without Ray: asking, recording, and every way a trial ends."""

from __future__ import annotations

import pickle
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.algorithms.hypervolume import HypervolumeRecorder, derive_reference
from paretune.search.algorithms.pareto import front_trials
from paretune.search.service import lifecycle as service
from paretune.search.service.budget import count_budget
from paretune.search.service.driver import DecisionLog, rung_history, trial_scheduler
from paretune.search.service.requeue import recover_orphans, requeue_interrupted
from paretune.search.service.searcher import FINISHED, SearchCore
from paretune.search.service.trainable import ERROR_KEY, eval_steps
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec


def make_spec(name: str = "s", **search: Any) -> Any:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": search.pop("objectives", ["accuracy", "trainable_params"]),
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [0, 4, 8]},
            "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        },
        "search": {
            "n_trials": 4,
            "max_steps": 9,
            "min_steps": 3,
            "eta": 3,
            "scheduler": "none",
            "sampler": "random",
            **search,
        },
    }
    return parse_spec(yaml.safe_dump(data, sort_keys=False), f"{name}.yaml")


@pytest.fixture
def make_core(sqlite_url):
    stores = []

    def build(name: str = "s", **search: Any) -> SearchCore:
        store = open_store(sqlite_url)
        stores.append(store)
        ctx = service.prepare_submit(store, make_spec(name, **search)).ctx
        return SearchCore(ctx, driver_id="test")

    yield build
    for store in stores:
        store.dispose()


def result(n: int, step: int, acc: float = 0.7, **extra: Any) -> dict[str, Any]:
    return {
        "trial_number": n,
        "step": step,
        "accuracy": acc,
        "eval_loss": 1 - acc,
        "train_seconds": 0.1 * step,
        **extra,
    }


def trial(core: SearchCore, number: int) -> Any:
    return core.study.get_trials(deepcopy=False)[number]


def test_ask_gives_a_config_with_the_trial_number_and_user_attrs(make_core):
    core = make_core()
    out = core.next_trial()
    assert out["trial_number"] == 0
    assert set(out["config"]) == {"plan", "hparams"}
    t = trial(core, 0)
    assert t.state == TrialState.RUNNING
    assert t.user_attrs["summary"].startswith("lora") or t.user_attrs["summary"] == "head only"
    assert t.user_attrs["trainable_params"] == out["trainable_params"] > 0
    assert t.user_attrs["config_hash"] == out["config_hash"]
    assert t.user_attrs["plan"] == out["config"]["plan"]


def test_complete_at_max_steps_records_metrics_values_and_hypervolume(make_core):
    core = make_core()
    n = core.next_trial()["trial_number"]
    core.on_result(n, result(n, 3, 0.6))
    core.on_result(n, result(n, 3, 0.6))  # a repeated step (Tune's final duplicate) is ignored
    assert core.on_end(n, result(n, 9, 0.8)) == "COMPLETE"
    t = trial(core, n)
    assert t.state == TrialState.COMPLETE
    assert t.values == [0.8, float(t.user_attrs["trainable_params"])]  # spec objective order
    assert t.intermediate_values == {3: 0.6, 9: 0.8}
    rows = core.store.metrics(core.ctx.study_id, trial_number=n, name="accuracy")
    assert [(r["step"], r["value"]) for r in rows] == [(3, 0.6), (9, 0.8)]
    hv = core.store.hypervolume_history(core.ctx.study_id)
    assert (
        len(hv) == 1
        and hv[0]["n_complete"] == 1
        and hv[0]["compute_steps"] == 9
        and hv[0]["value"] > 0
    )
    ref = core.store.events(core.ctx.study_id, kinds=["reference_point"])
    assert ref[0]["detail"]["point"] == {
        "accuracy": 0.0,
        "trainable_params": float(core.max_params),
    }


def test_stopped_before_max_steps_is_pruned_with_values_kept(make_core):
    core = make_core()
    n = core.next_trial()["trial_number"]
    assert core.on_end(n, result(n, 3, 0.55)) == "PRUNED"
    t = trial(core, n)
    assert t.state == TrialState.PRUNED and t.values is None
    assert t.user_attrs["steps"] == 3
    assert (
        core.store.metrics(core.ctx.study_id, trial_number=n, name="accuracy")[0]["value"] == 0.55
    )
    assert [e["kind"] for e in core.store.events(core.ctx.study_id, trial_number=n)] == [
        "trial_pruned"
    ]
    assert not core.store.hypervolume_history(core.ctx.study_id)


def test_a_raising_trial_fails_with_its_traceback(make_core):
    core = make_core()
    n = core.next_trial()["trial_number"]
    core.on_result(n, result(n, 3))
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom\n'
    assert core.on_end(n, {"trial_number": n, "step": 3, ERROR_KEY: tb}) == "FAIL"
    t = trial(core, n)
    assert t.state == TrialState.FAIL and t.user_attrs["traceback"] == tb
    failed = core.store.events(core.ctx.study_id, kinds=["trial_failed"])
    assert failed[0]["trial_number"] == n and failed[0]["detail"]["traceback"] == tb
    # a Ray-level error (worker died) has no traceback but still fails the trial
    m = core.next_trial()["trial_number"]
    assert core.on_end(m, None, error=True) == "FAIL"
    assert "Ray trial failed" in trial(core, m).user_attrs["traceback"]


def test_reaching_max_steps_without_an_objective_fails(make_core):
    core = make_core(objectives=["accuracy", "macro_f1"])
    n = core.next_trial()["trial_number"]
    assert core.on_end(n, result(n, 9)) == "FAIL"
    assert "macro_f1" in trial(core, n).user_attrs["traceback"]


def test_budget_counts_every_trial_and_then_finishes(make_core):
    core = make_core(n_trials=3)
    states = []
    for _ in range(3):
        n = core.next_trial()["trial_number"]
        states.append(core.on_end(n, result(n, 9 if n != 1 else 3)))
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert core.next_trial() == FINISHED
    assert core.budget().used == 3 and len(core.trials()) == 3


def test_over_budget_plans_are_rejected_not_counted_and_capped(make_core):
    # the head alone has 130 parameters (a limit below it is refused at submit); 131 allows only
    # the plan with every rank 0, which the random sampler proposes with odds (1/3)^8
    core = make_core(n_trials=3, constraints={"max_trainable_params": 131, "max_rejections": 4})
    assert core.next_trial() == FINISHED
    assert core.gave_up and "max_trainable_params" in core.gave_up
    trials = core.trials()
    assert len(trials) == 4 and all(
        t.state == TrialState.FAIL and t.user_attrs["rejected"] for t in trials
    )
    assert count_budget(trials, 3).used == 0
    events = core.store.events(core.ctx.study_id, kinds=["rejected"])
    assert len(events) == 4 and events[0]["detail"]["trainable_params"] > 100


def test_rejections_do_not_use_the_budget(make_core):
    # rank-8 LoRA on every module is 8322 parameters; cap at 4000: some plans pass, some do not
    core = make_core(n_trials=5, constraints={"max_trainable_params": 4000})
    while (out := core.next_trial()) != FINISHED:
        core.on_end(out["trial_number"], result(out["trial_number"], 9))
    trials = core.trials()
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    trained = [t for t in trials if not t.user_attrs.get("rejected")]
    assert rejected, "the random sampler should propose some plans over 4000 parameters"
    assert len(trained) == 5 and all(t.user_attrs["trainable_params"] <= 4000 for t in trained)


def test_measured_constraints_keep_infeasible_trials_off_the_front(make_core):
    core = make_core(constraints={"max_train_seconds": 1.0})
    a = core.next_trial()["trial_number"]
    core.on_end(a, result(a, 9, 0.9, train_seconds=5.0))
    b = core.next_trial()["trial_number"]
    core.on_end(b, result(b, 9, 0.5, train_seconds=0.5))
    ta, tb = trial(core, a), trial(core, b)
    assert ta.user_attrs["constraints"] == [4.0] and tb.user_attrs["constraints"] == [-0.5]
    # what Optuna's samplers read: the trial's own constraints (no deprecated constraints_func)
    assert list(ta.constraints.values()) == [4.0] and list(tb.constraints.values()) == [-0.5]
    assert [t.number for t in front_trials(core.trials(), core.spec.directions)] == [b]


def test_interrupted_trials_are_requeued_with_their_params_up_to_max_retries(make_core):
    core = make_core(n_trials=2, max_retries=1)
    n = core.next_trial()["trial_number"]
    core.on_result(n, result(n, 3))
    assert core.interrupt_live("interrupted") == [n]
    first = trial(core, n)
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"] == "interrupted"
    assert count_budget(core.trials(), 2).used == 1  # the queued retry took its place
    retry = core.next_trial()
    t = trial(core, retry["trial_number"])
    assert t.params == first.params and t.user_attrs["retry_of"] == n
    assert retry["config_hash"] == first.user_attrs["config_hash"]
    core.interrupt_live("interrupted")  # the retry is interrupted too: no retries left
    assert requeue_interrupted(core.study, core.store, core.ctx.study_id, 1) == []
    assert [
        e["trial_number"] for e in core.store.events(core.ctx.study_id, kinds=["retry_limit"])
    ] == [retry["trial_number"]]
    budget = count_budget(core.trials(), 2)
    assert budget.used == 1 and budget.requeued == 1  # the last interrupted one counts


def test_recover_orphans_completes_finished_ones_and_requeues_the_rest(make_core):
    core = make_core(n_trials=3)
    a = core.next_trial()["trial_number"]
    b = core.next_trial()["trial_number"]
    core.on_result(a, result(a, 3))
    core.on_result(a, result(a, 9, 0.85))  # reached max_steps, but the driver died before telling
    core.on_result(b, result(b, 3))
    # a new driver: the dead one's live table is gone, the study still has both RUNNING
    fresh = SearchCore(core.ctx, driver_id="new")
    out = recover_orphans(fresh.ctx)
    assert out == {"completed": [a], "interrupted": [b], "requeued": [b]}
    ta, tb = trial(fresh, a), trial(fresh, b)
    assert ta.state == TrialState.COMPLETE and ta.values[0] == 0.85 and ta.user_attrs["recovered"]
    assert tb.state == TrialState.FAIL and tb.user_attrs["interrupted"] == "driver died"
    waiting = [t for t in fresh.trials() if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == tb.params
    assert count_budget(fresh.trials(), 3).used == 2


class DiesAfter:
    """An Optuna trial whose process 'dies' (SystemExit) at its ``n + 1``-th suggest call."""

    def __init__(self, trial: Any, n: int) -> None:
        self._trial, self._left = trial, n

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        def suggest(*args: Any, **kwargs: Any) -> Any:
            if self._left == 0:
                raise SystemExit("killed")
            self._left -= 1
            return attr(*args, **kwargs)

        return suggest


@pytest.mark.parametrize("sampled", [0, 1])
def test_a_trial_killed_while_sampling_is_retried_with_the_parameters_it_was_given(
    make_core, sampled
):
    # the driver died after the asker enqueued the model's pick and the study handed it out,
    # but before define-by-run sampling wrote every parameter (none, or only the first)
    core = make_core(n_trials=3, sampler="tpe")
    for _ in range(2):
        n = core.next_trial()["trial_number"]
        core.on_result(n, result(n, 9, 0.6 + 0.1 * n))
    killed = core.asker.ask(core.study, core._sample)
    given = dict(trial(core, killed.number).system_attrs["fixed_params"])
    with pytest.raises(SystemExit):
        core._sample(DiesAfter(killed, sampled))
    assert len(trial(core, killed.number).params) == sampled < len(given)

    fresh = SearchCore(core.ctx, driver_id="new")
    out = recover_orphans(fresh.ctx)
    assert out["interrupted"] == [killed.number] and out["requeued"] == [killed.number]
    retry = fresh.next_trial()
    t = trial(fresh, retry["trial_number"])
    assert t.user_attrs["retry_of"] == killed.number
    assert t.params == given  # the configuration the dead driver had chosen, not a fresh draw


def test_reference_point_rules_and_it_never_moves(make_core):
    assert derive_reference(
        ["accuracy", "eval_loss", "trainable_params"], max_params=500, first_values=None
    ) == {
        "accuracy": 0.0,
        "eval_loss": 2.0,
        "trainable_params": 500.0,
    }
    assert derive_reference(["accuracy", "train_seconds"], max_params=1, first_values=None) is None
    assert derive_reference(
        ["train_seconds", "peak_memory_mb"],
        max_params=1,
        first_values={"train_seconds": 3, "peak_memory_mb": 10},
    ) == {"train_seconds": 6.0, "peak_memory_mb": 20.0}
    assert derive_reference(
        ["accuracy"], max_params=1, first_values=None, given={"accuracy": 0.5}
    ) == {"accuracy": 0.5}
    # a causal LM's loss scale comes from its first trial; its accuracies start at 0
    sft = ["eval_loss", "perplexity", "exact_match", "token_accuracy"]
    assert derive_reference(sft, max_params=1, first_values=None, task="causal_lm") is None
    assert derive_reference(
        sft,
        max_params=1,
        first_values={"eval_loss": 1.5, "perplexity": 4.5, "exact_match": 0.2},
        task="causal_lm",
    ) == {"eval_loss": 3.0, "perplexity": 9.0, "exact_match": 0.0, "token_accuracy": 0.0}

    core = make_core(objectives=["accuracy", "train_seconds"])
    for secs in (2.0, 9.0):
        n = core.next_trial()["trial_number"]
        core.on_end(n, result(n, 9, 0.7, train_seconds=secs))
    points = core.store.events(core.ctx.study_id, kinds=["reference_point"])
    assert len(points) == 1 and points[0]["detail"]["point"] == {
        "accuracy": 0.0,
        "train_seconds": 4.0,
    }
    again = HypervolumeRecorder(core.store, core.ctx.study_id, core.spec, core.max_params)
    assert again.reference(core.trials()) == {"accuracy": 0.0, "train_seconds": 4.0}


def test_eval_steps_include_rungs_eval_every_and_max_steps():
    spec = make_spec(max_steps=150, min_steps=25, eta=3).spec
    assert eval_steps(spec.search) == [25, 75, 150]
    spec = make_spec(max_steps=100, min_steps=30, eta=3, eval_every=40).spec
    assert eval_steps(spec.search) == [30, 40, 80, 90, 100]


def test_scheduler_seam_history_and_decisions(make_core):
    core = make_core()
    n = core.next_trial()["trial_number"]
    core.on_result(n, result(n, 3, 0.6))
    core.on_end(n, result(n, 9, 0.8))
    history = rung_history(core.store, core.ctx.study_id)
    assert [(t, s) for t, s, _ in history] == [(n, 3), (n, 9)]
    assert history[1][2]["accuracy"] == 0.8
    on_decision = DecisionLog(core.store, core.ctx.study_id)
    on_decision({"trial_number": n, "rung": 3, "rank": 0, "action": "promote", "reason": "front 0"})
    on_decision({"trial_number": 5, "rung": 3, "rank": 4, "action": "stop", "reason": "front 2"})
    kinds = [
        (e["kind"], e["trial_number"])
        for e in core.store.events(core.ctx.study_id, kinds=["promote", "stop"])
    ]
    assert kinds == [("promote", n), ("stop", 5)]
    assert pickle.loads(pickle.dumps(on_decision)).store is None  # Tune pickles its scheduler
    from ray.tune.schedulers import FIFOScheduler

    assert isinstance(trial_scheduler(core.ctx, on_decision), FIFOScheduler)  # scheduler: none


def test_optuna_study_is_plain_optuna(make_core, sqlite_url):
    core = make_core("plain")
    n = core.next_trial()["trial_number"]
    core.on_end(n, result(n, 9, 0.75))
    loaded = optuna.load_study(study_name="plain", storage=sqlite_url)
    assert [d.name for d in loaded.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert loaded.trials[0].values[0] == 0.75 and loaded.trials[0].params


def test_tpe_keeps_sampling_a_multi_objective_study_with_pruned_trials(make_core):
    # Optuna's TPE ranks PRUNED trials by their last intermediate value with study.direction,
    # which raises on multi-objective studies: pruned trials must carry no intermediate values.
    core = make_core(n_trials=14, sampler="tpe")
    while (out := core.next_trial()) != FINISHED:
        n = out["trial_number"]
        core.on_result(n, result(n, 3, 0.6))
        core.on_end(n, result(n, 9 if n % 2 else 3, 0.7))
    trials = core.trials()
    assert len(trials) == 14
    assert all(t.intermediate_values == {} for t in trials if t.state == TrialState.PRUNED)
    assert all(
        t.intermediate_values == {3: 0.6, 9: 0.7} for t in trials if t.state == TrialState.COMPLETE
    )


def test_a_trial_stopped_above_max_peak_memory_is_pruned_and_infeasible(make_core):
    core = make_core(constraints={"max_peak_memory_mb": 1000.0})
    a = core.next_trial()["trial_number"]
    core.on_result(a, result(a, 3, 0.95, peak_memory_mb=1500.0, paretune_over_memory=True))
    assert core.on_end(a, None) == "PRUNED"
    event = core.store.events(core.ctx.study_id, kinds=["trial_pruned"])[0]
    assert event["detail"]["reason"] == "max_peak_memory_mb=1000"
    assert event["detail"]["peak_memory_mb"] == 1500.0
    assert trial(core, a).user_attrs["stopped"] == "peak_memory_mb 1500 > 1000"
    assert list(trial(core, a).constraints.values()) == [500.0]
    b = core.next_trial()["trial_number"]
    core.on_end(b, result(b, 9, 0.5, peak_memory_mb=800.0))
    assert [t.number for t in front_trials(core.trials(), core.spec.directions)] == [b]


def test_a_timed_out_trial_fails_with_the_reason(make_core):
    core = make_core(trial_timeout_s=5)
    n = core.next_trial()["trial_number"]
    core.on_result(n, result(n, 3, paretune_timeout=True))
    assert core.on_end(n, None) == "FAIL"
    event = core.store.events(core.ctx.study_id, kinds=["trial_failed"])[0]
    assert event["detail"]["reason"] == "timeout"
    assert "trial_timeout_s=5.0" in event["detail"]["traceback"]
    assert trial(core, n).user_attrs["fail_reason"] == "timeout"


def test_submit_checks_reference_point_and_foreign_optuna_studies(sqlite_url):
    from paretune.spaces.errors import SpecError, UserError

    store = open_store(sqlite_url)
    try:
        with pytest.raises(
            SpecError, match=r"reference_point.eval_loss: 'eval_loss' is not an objective"
        ):
            service.prepare_submit(store, make_spec("ref", reference_point={"eval_loss": 1.0}))
        optuna.create_study(study_name="foreign", storage=store.optuna_storage())
        with pytest.raises(UserError, match="that paretune did not create"):
            service.prepare_submit(store, make_spec("foreign"))
    finally:
        store.dispose()
