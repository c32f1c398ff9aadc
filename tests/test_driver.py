"""The driver on Ray Tune with fake trainables: trial states, the scheduler seam, stopping, budget.

One local Ray session (2 CPUs) serves the whole module.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions, run_study
from paretune.search.store.study_store import open_store
from paretune.spaces import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("ray_session")  # every test here runs studies on Ray


def spec_text(name: str, **search: Any) -> str:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
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
            "max_concurrent": 2,
            **search,
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def fake_trainer(
    delay: float = 0.0, fail_above: float = math.inf, stop_below: float = 0.0, pause: float = 0.0
):
    """A trial function: accuracy grows with LoRA rank; the learning rate picks failures and early
    stops; ``delay`` before every evaluation, ``pause`` between evaluations."""

    def train(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
        lora = config.plan.get("lora")
        rank = sum(r for _, _, r in lora.ranks) if lora else 0
        lr = config.hparams.learning_rate
        acc = 0.5
        for i, step in enumerate(eval_steps):
            time.sleep(delay + (pause if i else 0.0))
            if lr > fail_above:
                raise RuntimeError(f"fake divergence at lr={lr:.2e}")
            acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
            metrics = {
                "accuracy": acc,
                "eval_loss": 1 - acc,
                "train_seconds": 0.01 * step,
                "peak_memory_mb": 50.0,
                "train_loss": 0.3,  # not an objective: stored all the same
            }
            if not reporter(step, metrics) or lr < stop_below:
                break
        return {"accuracy": acc}

    return train


def submit(tmp_path, name: str, trial_fn, **search: Any):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    loaded = parse_spec(spec_text(name, **search), f"{name}.yaml")
    store = open_store(url)
    ctx = service.prepare_submit(store, loaded).ctx
    return store, ctx, url


def test_a_study_runs_every_state_on_ray(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Ray's files must land in runs/<study> here, not ~/ray_results
    # seed 3: the rung models' seeded random picks give all three states (FAIL at trials 3 and 4)
    store, ctx, url = submit(
        tmp_path, "states", fake_trainer(fail_above=2e-3, stop_below=3e-4), n_trials=8, seed=3
    )
    outcome = run_study(ctx, trial_fn=fake_trainer(fail_above=2e-3, stop_below=3e-4))
    assert outcome.status == "done", outcome.message
    trials = optuna.load_study(study_name="states", storage=url).trials
    assert len(trials) == 8
    for t in trials:
        lr = t.user_attrs["hparams"]["learning_rate"]
        expected = (
            TrialState.FAIL
            if lr > 2e-3
            else TrialState.PRUNED
            if lr < 3e-4
            else TrialState.COMPLETE
        )
        assert t.state == expected, (t.number, lr)
        steps = [
            r["step"] for r in store.metrics(ctx.study_id, trial_number=t.number, name="accuracy")
        ]
        if expected == TrialState.COMPLETE:
            assert steps == [3, 9] and t.intermediate_values.keys() == {3, 9}
            names = {r["name"] for r in store.metrics(ctx.study_id, trial_number=t.number)}
            assert names == {
                "accuracy",
                "eval_loss",
                "train_seconds",
                "peak_memory_mb",
                "train_loss",
                "trainable_params",
            }
            assert t.values[1] == t.user_attrs["trainable_params"]
        elif expected == TrialState.PRUNED:
            assert steps == [3] and t.values is None
        else:
            assert "RuntimeError: fake divergence" in t.user_attrs["traceback"]
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    failed = store.events(ctx.study_id, kinds=["trial_failed"])
    assert len(failed) == sum(t.state == TrialState.FAIL for t in trials)
    assert "fake divergence" in failed[0]["detail"]["traceback"]
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert [h["n_complete"] for h in store.hypervolume_history(ctx.study_id)] == list(
        range(1, n_complete + 1)
    )
    info = store.get_study("states")
    assert info.status == "done" and info.driver_id is None
    assert any((tmp_path / "runs" / "states").glob("tune-*/trial-*"))
    # resuming a study whose budget is spent ends at once, without a new trial
    outcome = service.resume("states", storage=url, trial_fn=fake_trainer())
    assert outcome.status == "done" and "budget of 8 trials spent" in outcome.message
    assert len(optuna.load_study(study_name="states", storage=url).trials) == 8
    store.dispose()


class _StopOddTrials:
    """A stand-in for paretune.search.algorithms.schedulers: stops odd trials at the first rung."""

    def __init__(self, on_decision, history):
        from ray.tune.schedulers import FIFOScheduler

        class StopOdd(FIFOScheduler):
            def on_trial_result(self, tune_controller, trial, result):
                n = result["trial_number"]
                if result["step"] == 3:
                    action = "stop" if n % 2 else "promote"
                    on_decision(
                        {
                            "trial_number": n,
                            "rung": 3,
                            "rank": n % 2,
                            "action": action,
                            "reason": "odd",
                        }
                    )
                    if action == "stop":
                        return self.STOP
                return self.CONTINUE

        self.scheduler = StopOdd()
        self.history = history


def test_the_scheduler_seam_and_scheduler_stops_become_pruned(tmp_path, monkeypatch):
    seen: dict[str, Any] = {}

    def make_trial_scheduler(spec, on_decision, history):
        seen.update(spec=spec, history=history)
        return _StopOddTrials(on_decision, history).scheduler

    module = types.ModuleType("paretune.search.algorithms.schedulers")
    module.make_trial_scheduler = make_trial_scheduler
    monkeypatch.setitem(sys.modules, "paretune.search.algorithms.schedulers", module)
    store, ctx, url = submit(tmp_path, "sched", None, n_trials=4, scheduler="mo-asha")
    outcome = run_study(
        ctx, trial_fn=fake_trainer(delay=0.05), options=DriverOptions(run_dir=str(tmp_path / "r"))
    )
    assert outcome.status == "done"
    assert seen["spec"].study == "sched" and seen["history"] == []
    trials = optuna.load_study(study_name="sched", storage=url).trials
    assert [t.state for t in trials] == [
        TrialState.PRUNED if t.number % 2 else TrialState.COMPLETE for t in trials
    ]
    assert all(t.user_attrs["steps"] == 3 for t in trials if t.number % 2)
    decisions = store.events(ctx.study_id, kinds=["promote", "stop"])
    assert sorted((e["trial_number"], e["kind"]) for e in decisions) == [
        (t.number, "stop" if t.number % 2 else "promote") for t in trials
    ]
    store.dispose()


def test_ctrl_c_interrupts_running_trials(tmp_path):
    store, ctx, url = submit(tmp_path, "sigint", None, n_trials=6)

    def interrupt_after_first_result():
        deadline = time.monotonic() + 60
        while store.count_metrics(ctx.study_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_first_result, daemon=True).start()
    outcome = run_study(
        ctx, trial_fn=fake_trainer(pause=5.0), options=DriverOptions(run_dir=str(tmp_path / "r"))
    )
    assert outcome.status == "interrupted" and outcome.interrupted_trials
    trials = optuna.load_study(study_name="sigint", storage=url).trials
    for n in outcome.interrupted_trials:
        assert (
            trials[n].state == TrialState.FAIL
            and trials[n].user_attrs["interrupted"] == "interrupted"
        )
    assert {e["trial_number"] for e in store.events(ctx.study_id, kinds=["interrupted"])} == set(
        outcome.interrupted_trials
    )
    assert store.get_study("sigint").status == "interrupted"
    assert not any(t.state == TrialState.RUNNING for t in trials)
    store.dispose()


def test_stop_request_and_add_trials(tmp_path):
    store, ctx, url = submit(tmp_path, "stopme", None, n_trials=3)

    def stop_after_first_result():
        deadline = time.monotonic() + 60
        while store.count_metrics(ctx.study_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        service.request_stop("stopme", storage=url)

    threading.Thread(target=stop_after_first_result, daemon=True).start()
    options = DriverOptions(run_dir=str(tmp_path / "r"), heartbeat_s=0.3)
    outcome = run_study(ctx, trial_fn=fake_trainer(pause=5.0), options=options)
    assert outcome.status == "stopped"
    assert store.get_study("stopme").status == "stopped"
    # resume with two more trials: the interrupted ones are retried and the budget is 5
    outcome = service.resume("stopme", storage=url, add=2, trial_fn=fake_trainer(), options=options)
    assert outcome.status == "done"
    assert store.get_study("stopme").n_trials == 5
    budget = service.budget_of(store, "stopme")
    trials = optuna.load_study(study_name="stopme", storage=url).trials
    assert budget.used == 5
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    assert retried and all(trials[n].user_attrs.get("interrupted") for n in retried)
    counted = [t for t in trials if t.number not in retried]
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    store.dispose()


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "examples" / "tiny.yaml").exists(), reason="examples/tiny.yaml not written yet"
)
def test_end_to_end_with_the_real_trainer(tmp_path):
    """examples/tiny.yaml (tiny-bert, synthetic data) with paretune.trainers.train_trial, 2 trials."""
    loaded = load_spec(REPO / "examples" / "tiny.yaml")
    search = loaded.spec.search.model_copy(update={"n_trials": 2})
    loaded.spec = loaded.spec.model_copy(
        update={"search": search, "artifacts": str(tmp_path / "runs")}
    )
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    outcome = service.submit(loaded, storage=url)
    assert outcome.status == "done", outcome.message
    study = optuna.load_study(study_name=loaded.spec.study, storage=url)
    assert len(study.trials) == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete, [t.user_attrs.get("traceback") for t in study.trials]
    for t in complete:
        acc = (
            t.values[loaded.spec.objective_names.index("accuracy")]
            if "accuracy" in loaded.spec.objective_names
            else 0.5
        )
        assert 0.0 <= acc <= 1.0
        if "trainable_params" in loaded.spec.objective_names:
            # the trainer's count of the built model equals the analytic count
            assert (
                t.values[loaded.spec.objective_names.index("trainable_params")]
                == t.user_attrs["trainable_params"]
            )


def test_every_complete_trial_of_a_mo_hyperband_study_exports_in_peft_format(tmp_path):
    """The default scheduler stops a trial at max_steps as soon as it reports there; the adapter
    must already be on disk then. Each exported adapter loads with peft alone and gives the
    logits of the trial's own model (its max_steps checkpoint)."""
    import torch
    from peft import PeftModel
    from typer.testing import CliRunner

    from paretune.search.cli.app import app
    from paretune.spaces import config_from_params, dims_from_config, resolve_model
    from paretune.trainers import build_trial_model
    from paretune.trainers.models import load_model

    text = spec_text("hb", scheduler="mo-hyperband", sampler="tpe", n_trials=6).replace(
        "dataset: synthetic", "dataset: synthetic\n  synthetic_size: 300\n  max_length: 16"
    )
    loaded = parse_spec(text, "hb.yaml")
    loaded.spec = loaded.spec.model_copy(update={"artifacts": str(tmp_path / "runs")})
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    outcome = service.submit(loaded, storage=url)
    assert outcome.status == "done", outcome.message
    study = optuna.load_study(study_name="hb", storage=url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete, [t.user_attrs.get("traceback") for t in study.trials]
    spec = loaded.spec
    ids = torch.randint(5, 90, (3, 9), generator=torch.Generator().manual_seed(1))
    for t in complete:
        out = tmp_path / f"export-{t.number}"
        res = CliRunner().invoke(
            app, ["export", "hb", "--trial", str(t.number), "--out", str(out), "--storage", url]
        )
        assert res.exit_code == 0, (res.output, res.exception)
        assert (out / "adapter_config.json").is_file()  # PEFT format: a LoRA plan
        source = resolve_model(spec.model.name)
        reloaded = PeftModel.from_pretrained(load_model(source, 2), out).eval()
        config = config_from_params(t.params, spec, dims_from_config(source.config, 2))
        own, *_ = build_trial_model(spec, config)
        checkpoint = torch.load(Path(t.user_attrs["trial_dir"]) / "checkpoint.pt")
        assert checkpoint["step"] == spec.search.max_steps
        params = dict(own.named_parameters())
        with torch.no_grad():
            for name, value in checkpoint["params"].items():
                params[name].copy_(value)
            expected = own.eval()(input_ids=ids).logits
            got = reloaded(input_ids=ids).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def sized_trainer(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """Accuracy grows with log trainable parameters and with steps; no training."""
    from paretune.spaces import count_trainable, dims_from_config, resolve_model

    dims = dims_from_config(resolve_model(spec.model.name).config, 2)
    n = count_trainable(config.plan, dims)
    for step in eval_steps:
        acc = 0.4 + 0.04 * math.log(n) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {"accuracy": acc}


def test_a_twelve_trial_mixed_study_covers_the_range_and_the_families(tmp_path):
    """The `mixed` preset through the real searcher and scheduler: the proposals of 12 trials
    span at least 80 % of the space's log-parameter range, try families alone and together."""
    from paretune.spaces import describe_space, dims_from_config, resolve_model

    text = spec_text("mix", scheduler="mo-hyperband", sampler="tpe", n_trials=12)
    text = text.replace(
        "space:\n  lora:\n    targets:\n    - query\n    - value\n    ranks:\n    - 0\n    - 4\n    - 8\n",
        "space:\n  preset: mixed\n",
    )
    loaded = parse_spec(text, "mix.yaml")
    assert loaded.spec.space.combine is not None
    url = f"sqlite:///{tmp_path / 'mix.db'}"
    store = open_store(url)
    ctx = service.prepare_submit(store, loaded).ctx
    outcome = run_study(ctx, trial_fn=sized_trainer)
    assert outcome.status == "done", outcome.message
    trials = optuna.load_study(study_name="mix", storage=url).trials
    assert len(trials) == 12
    counts = [t.user_attrs["trainable_params"] for t in trials]
    summary = describe_space(loaded.spec, dims_from_config(resolve_model("tiny-bert").config, 2))
    span = math.log(summary.max_params) - math.log(summary.min_params)
    assert (math.log(max(counts)) - math.log(min(counts))) / span >= 0.8, counts
    families = [t.params["families"] for t in trials]
    alone = {f for f in families if "+" not in f}
    assert len(alone) == 7, families  # each family alone: the start-up designs
    assert any("+" in f for f in families), families  # and together
