"""Trial faults: a trial that raises, runs out of memory, goes NaN or outruns its timeout ends FAIL
with the reason in the store (user attribute ``fail_reason``, ``trial_failed`` event), and the
study goes on to its full budget. One local Ray session (2 CPUs) serves the module.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn

from paretune.search.service import lifecycle as service
from paretune.search.service import ray_searcher
from paretune.search.service.driver import DriverOptions, run_study
from paretune.search.service.trainable import NonFiniteMetricError, check_finite
from paretune.search.service.trial_results import failure_reason
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec
from paretune.spaces.plan import Hyperparams
from paretune.trainers.loop import CHECKPOINT, train

# The learning rate of a trial picks what goes wrong in it (enqueued, so every kind runs once).
KINDS = {
    1e-3: "ok",
    2e-3: "raise",
    3e-3: "memory",
    4e-3: "cuda_oom",
    5e-3: "nan_metric",
    6e-3: "nan_loss",
    7e-3: "slow",
    8e-3: "hang",
    9e-3: "hog",  # reports a peak memory above max_peak_memory_mb from its second evaluation
}
REASONS = {
    "raise": "error",
    "memory": "oom",
    "cuda_oom": "oom",
    "nan_metric": "nan",
    "nan_loss": "nan",
    "slow": "timeout",
    "hang": "timeout",
}


pytestmark = pytest.mark.usefixtures("ray_session")  # every test here runs studies on Ray


def faulty(
    spec: Any,
    config: Any,
    reporter: Any,
    *,
    max_steps: int,
    eval_steps: list[int],
    trial_dir: Any = None,
) -> dict[str, float]:
    """A trial function that misbehaves as its learning rate says (see ``KINDS``)."""
    kind = KINDS[round(config.hparams.learning_rate, 6)]
    for i, step in enumerate(eval_steps):
        metrics = {"accuracy": 0.5 + 0.04 * step, "eval_loss": 0.5}
        if i == 1:
            if kind == "raise":
                raise RuntimeError("fake failure in the trial")
            if kind == "memory":
                raise MemoryError("fake: cannot allocate")
            if kind == "cuda_oom":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            if kind == "nan_loss":  # what paretune.trainers.loop raises on a non-finite loss
                raise FloatingPointError(f"training loss is nan at step {step}")
            if kind == "nan_metric":
                metrics["accuracy"] = math.nan
            if kind == "hang":
                time.sleep(300)  # never reports again: the driver's watchdog kills it
        if kind == "hog" and i >= 1:
            metrics["peak_memory_mb"] = 5000.0
        if kind == "slow":
            time.sleep(0.6)
        if not reporter(step, metrics):
            break
    return metrics


def spec_text(name: str, lrs: list[float], **search: Any) -> str:
    data = {
        "study": name,
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {"lora": {"targets": ["query"], "ranks": [0, 4]}, "learning_rate": lrs},
        "search": {
            "max_steps": 9,
            "min_steps": 3,
            "eval_every": 1,
            "scheduler": "none",
            "sampler": "random",
            "max_concurrent": 2,
            **search,
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def run_faulty(tmp_path: Any, name: str, kinds: list[str], n_trials: int, **search: Any) -> Any:
    """Run a study whose first trials are one of each kind; returns (store, ctx, outcome, trials)."""
    lrs = [lr for lr, k in KINDS.items() if k in kinds or k == "ok"]
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    loaded = parse_spec(spec_text(name, lrs, n_trials=n_trials, **search), f"{name}.yaml")
    store = open_store(url)
    ctx = service.prepare_submit(store, loaded).ctx
    for lr, kind in KINDS.items():
        if kind in kinds:
            ctx.study.enqueue_trial({"learning_rate": lr})
    outcome = run_study(ctx, trial_fn=faulty, options=DriverOptions(run_dir=str(tmp_path / "r")))
    trials = optuna.load_study(study_name=name, storage=url).trials
    return store, ctx, outcome, trials


def kind_of(trial: Any) -> str:
    return KINDS[round(trial.user_attrs["hparams"]["learning_rate"], 6)]


def test_raise_oom_and_nan_fail_with_their_reason_and_the_study_goes_on(tmp_path):
    faults = ["raise", "memory", "cuda_oom", "nan_metric", "nan_loss"]
    store, ctx, outcome, trials = run_faulty(tmp_path, "faults", faults, n_trials=7)
    assert outcome.status == "done", outcome.message
    assert len(trials) == 7  # the full budget, failures included
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    events = {e["trial_number"]: e for e in store.events(ctx.study_id, kinds=["trial_failed"])}
    seen = set()
    for t in trials:
        kind = kind_of(t)
        if kind == "ok":
            assert t.state == TrialState.COMPLETE and "fail_reason" not in t.user_attrs
            continue
        seen.add(kind)
        assert t.state == TrialState.FAIL, (t.number, kind)
        assert t.user_attrs["fail_reason"] == REASONS[kind], (kind, t.user_attrs["traceback"])
        assert events[t.number]["detail"]["reason"] == REASONS[kind]
        assert events[t.number]["detail"]["traceback"] == t.user_attrs["traceback"]
        # the fault hit at the second evaluation: the first one is kept, nothing after it
        steps = {r["step"] for r in store.metrics(ctx.study_id, trial_number=t.number)}
        assert steps == {1}, (kind, steps)
        assert t.user_attrs["steps"] == 1
    assert seen == set(faults)
    by_kind = {kind_of(t): t.user_attrs.get("traceback", "") for t in trials}
    assert "MemoryError: fake: cannot allocate" in by_kind["memory"]
    assert "OutOfMemoryError: CUDA out of memory" in by_kind["cuda_oom"]
    assert "NonFiniteMetricError: metric accuracy is nan at step 2" in by_kind["nan_metric"]
    assert "training loss is nan" in by_kind["nan_loss"]
    assert "RuntimeError: fake failure" in by_kind["raise"]
    assert store.get_study("faults").status == "done"
    store.dispose()


def test_timeouts_fail_slow_and_hung_trials_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_searcher, "WATCHDOG_GRACE_S", 12.0)  # > a worker start-up under load
    started = time.monotonic()
    store, ctx, outcome, trials = run_faulty(
        tmp_path, "timeouts", ["slow", "hang"], n_trials=3, trial_timeout_s=2.0, max_failures=2
    )  # max_failures: Ray restarts trials whose worker died, but not one killed for its timeout
    assert time.monotonic() - started < 90  # the hung trial (300 s) did not hold the study
    assert outcome.status == "done", outcome.message
    assert len(trials) == 3
    by_kind = {kind_of(t): t for t in trials if kind_of(t) != "ok"}
    assert set(by_kind) == {"slow", "hang"}
    for kind, t in by_kind.items():
        assert t.state == TrialState.FAIL, kind
        assert t.user_attrs["fail_reason"] == "timeout"
        assert "trial_timeout_s=2.0 exceeded" in t.user_attrs["traceback"]
        event = store.events(ctx.study_id, trial_number=t.number, kinds=["trial_failed"])
        assert event and event[0]["detail"]["reason"] == "timeout"
    # the slow one was asked to stop at its first report past 2 s; the hung one was killed
    assert 2 <= by_kind["slow"].user_attrs["steps"] < 9
    assert "killed" in by_kind["hang"].user_attrs["traceback"]
    assert all(t.state == TrialState.COMPLETE for t in trials if kind_of(t) == "ok")
    store.dispose()


def test_a_trial_above_the_memory_limit_stops_early_and_the_study_goes_on(tmp_path):
    store, ctx, outcome, trials = run_faulty(
        tmp_path, "hog", ["hog"], n_trials=2, constraints={"max_peak_memory_mb": 1000.0}
    )
    assert outcome.status == "done", outcome.message
    hog = next(t for t in trials if kind_of(t) == "hog")
    assert hog.state == TrialState.PRUNED and hog.user_attrs["steps"] == 2  # not 9
    assert hog.user_attrs["stopped"] == "peak_memory_mb 5000 > 1000"
    event = store.events(ctx.study_id, trial_number=hog.number, kinds=["trial_pruned"])[0]
    assert event["detail"]["reason"] == "max_peak_memory_mb=1000"
    assert all(t.state == TrialState.COMPLETE for t in trials if kind_of(t) == "ok")
    store.dispose()


def test_failure_reasons_are_read_from_the_traceback():
    assert failure_reason("Traceback...\nMemoryError") == "oom"
    assert failure_reason("...\ntorch.OutOfMemoryError: CUDA out of memory.") == "oom"
    assert failure_reason("ray.exceptions.OutOfMemoryError: Task was killed") == "oom"
    assert failure_reason("...\nFloatingPointError: training loss is nan at step 4") == "nan"
    assert failure_reason("...\nValueError: bad shape") == "error"
    with pytest.raises(NonFiniteMetricError, match="eval_loss is inf at step 3"):
        check_finite(3, {"accuracy": 0.5, "eval_loss": math.inf})
    check_finite(3, {"accuracy": 0.5, "flag": True, "name": "x"})


class _Linear(nn.Module):
    """Logits from a bias alone; NaN in training or in evaluation as asked."""

    def __init__(self, nan_in: str) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))
        self.nan_in = nan_in

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        logits = self.bias.expand(input_ids.shape[0], 2)
        if (self.nan_in == "train") == self.training:
            logits = logits * math.nan
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize(
    ("nan_in", "message"),
    [("train", "training loss is nan at step 1"), ("eval", "eval_loss is nan at step 2")],
)
def test_the_loop_stops_at_once_on_a_non_finite_loss(tmp_path, nan_in, message):
    data = SimpleNamespace(input_ids=[[1, 2, 3], [4, 5], [6]] * 4, labels=[0, 1, 0] * 4)
    reports: list[int] = []
    with pytest.raises(FloatingPointError, match=message):
        train(
            _Linear(nan_in),
            data,
            data,
            Hyperparams(batch_size=4),
            num_labels=2,
            pad_id=0,
            max_steps=6,
            eval_steps=[2, 4],
            reporter=lambda s, m: reports.append(s) or True,
            checkpoint_dir=tmp_path,
        )
    assert reports == []  # nothing diverged was reported ...
    assert not (tmp_path / CHECKPOINT).exists()  # ... or checkpointed
