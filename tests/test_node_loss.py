"""A worker node dies under a trial: Ray retries the trial (``search.max_failures``), the study
still spends its whole budget, and the event log says which node ran what and what was lost.

A three-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head with no CPU for
trials and two workers with one CPU each.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions, run_study
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec

N_TRIALS = 4


@pytest.fixture(scope="module")
def three_nodes():
    import ray
    import ray.cloudpickle
    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    fast_health = {
        "health_check_initial_delay_ms": 0,
        "health_check_period_ms": 500,
        "health_check_failure_threshold": 4,
    }
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": fast_health},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def slow_trainer(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    """Two evaluations, 2 s apart: time enough to kill a node under a running trial."""
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for i, step in enumerate(eval_steps):
        time.sleep(2.0 if i else 0.5)
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}


def spec_text() -> str:
    data = {
        "study": "nodeloss",
        "model": "tiny-bert",
        "task": {"dataset": "synthetic"},
        "objectives": ["accuracy", "trainable_params"],
        "space": {
            "lora": {"targets": ["query", "value"], "ranks": [0, 4, 8]},
            "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        },
        "search": {
            "n_trials": N_TRIALS,
            "max_steps": 9,
            "min_steps": 3,
            "scheduler": "none",
            "sampler": "random",
            "max_concurrent": 2,
            "max_failures": 2,
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def test_a_lost_node_costs_a_retry_not_the_budget(three_nodes, tmp_path):
    cluster, workers = three_nodes
    url = f"sqlite:///{tmp_path / 'nodeloss.db'}"
    store = open_store(url)
    ctx = service.prepare_submit(store, parse_spec(spec_text(), "nodeloss.yaml")).ctx
    outcome: dict[str, Any] = {}

    def drive() -> None:
        try:
            outcome["run"] = run_study(
                ctx,
                trial_fn=slow_trainer,
                options=DriverOptions(run_dir=str(tmp_path / "runs"), handle_sigint=False),
            )
        except BaseException as e:  # pragma: no cover - shown by the assertion below
            outcome["error"] = e

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()

    # both workers run a trial: kill the node of one of them mid-trial
    ids = {w.node_id: w for w in workers}
    deadline = time.monotonic() + 90
    seen: dict[int, str] = {}
    while time.monotonic() < deadline and len(set(seen.values())) < 2:
        for e in store.events(ctx.study_id, kinds=["trial_running"]):
            if e["detail"].get("node_id") in ids:
                seen[e["trial_number"]] = e["detail"]["node_id"]
        time.sleep(0.2)
    assert len(set(seen.values())) == 2, f"trials did not spread over both workers: {seen}"
    victim_trial, victim_node = next(iter(seen.items()))
    cluster.remove_node(ids[victim_node], allow_graceful=False)

    driver.join(timeout=150)
    assert not driver.is_alive(), "the study did not end after the node died"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["run"].status == "done", outcome["run"].message

    trials = optuna.load_study(study_name="nodeloss", storage=url).trials
    assert len(trials) == N_TRIALS
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS
    retried = store.events(ctx.study_id, kinds=["trial_retried"])
    assert retried and victim_trial in {e["trial_number"] for e in retried}
    assert all(e["detail"]["error"] for e in retried)
    lost = store.events(ctx.study_id, kinds=["node_lost"])
    assert lost and lost[0]["trial_number"] == victim_trial
    assert lost[0]["detail"]["node_id"] == victim_node
    # the retried trial ran again on the surviving node, which the event log records
    nodes = [
        e["detail"]["node_id"]
        for e in store.events(ctx.study_id, trial_number=victim_trial, kinds=["trial_running"])
    ]
    assert nodes[0] == victim_node and nodes[-1] != victim_node
    # every metric stored once per step although the trial reported its first step twice
    keys = [(r["trial_number"], r["step"], r["name"]) for r in store.metrics(ctx.study_id)]
    assert len(keys) == len(set(keys))
    store.dispose()
