"""Trials share a GPU through Ray's fractional GPUs: ``resources.gpus: 0.25`` runs four at once.

Ray schedules declared GPUs on a CPU-only node as on a real one, so the placement is tested here;
what a trial measures on a real GPU is the GPU check's (benchmarks/gpu_check.sh)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions, run_study
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec

RAY_GPUS = 1  # the ray_session fixture declares one GPU on the node
pytestmark = pytest.mark.usefixtures("ray_session")


def sharing_trial(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """Writes when it ran and which GPU Ray gave it, holding its place a while."""
    import ray

    started = time.time()
    time.sleep(5.0)  # longer than Ray takes to start the other workers
    Path(trial_dir).mkdir(parents=True, exist_ok=True)
    (Path(trial_dir) / "gpu.json").write_text(
        json.dumps({"start": started, "end": time.time(), "gpus": ray.get_gpu_ids()})
    )
    metrics: dict[str, Any] = {}
    for step in eval_steps:
        metrics = {"accuracy": 0.6, "eval_loss": 0.4}
        if not reporter(step, metrics):
            break
    return metrics


def test_a_quarter_gpu_each_runs_four_trials_on_one_gpu_at_once(tmp_path):
    spec = {
        "study": "share",
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {"lora": {"targets": ["query"], "ranks": [0, 4]}, "learning_rate": [1e-3, 3e-3]},
        "resources": {"cpus": 0.5, "gpus": 0.25},
        "search": {"n_trials": 4, "max_concurrent": 4, "max_steps": 3, "min_steps": 3,
                   "scheduler": "none", "sampler": "random"},
    }  # fmt: skip
    url = f"sqlite:///{tmp_path / 'share.db'}"
    store = open_store(url)
    ctx = service.prepare_submit(store, parse_spec(yaml.safe_dump(spec), "share.yaml")).ctx
    outcome = run_study(
        ctx, trial_fn=sharing_trial, options=DriverOptions(run_dir=str(tmp_path / "r"))
    )
    assert outcome.status == "done", outcome.message
    trials = optuna.load_study(study_name="share", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    runs = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("gpu.json")]
    assert len(runs) == 4
    assert all(r["gpus"] == [0] for r in runs)  # every trial on the one GPU
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs)  # all four at once
    store.dispose()
