"""Resume after the driver is killed with SIGKILL mid-study: the budget is finished, nothing lost or doubled."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions
from paretune.search.service.requeue import given_params
from paretune.search.store.study_store import open_store

N_TRIALS = 6

# The driver subprocess: the fake trainer lives in __main__, so Ray pickles it by value.
DRIVER = r"""
import sys, time
from paretune.spaces import parse_spec
from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions

def slow(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for step in eval_steps:
        time.sleep(1.0)  # slow enough that the kill lands mid-study
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}

spec_path, url, run_dir = sys.argv[1:4]
loaded = parse_spec(open(spec_path).read(), spec_path)
service.submit(loaded, storage=url, trial_fn=slow, options=DriverOptions(num_cpus=2, run_dir=run_dir))
"""


def fast(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for step in eval_steps:
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}


def spec_file(tmp_path: Path) -> Path:
    data = {
        "study": "killed",
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
            "eta": 3,
            "scheduler": "none",
            "sampler": "random",
            "max_concurrent": 2,
            "max_retries": 2,
        },
    }
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _states(url: str) -> collections.Counter:
    try:
        trials = optuna.load_study(study_name="killed", storage=url).get_trials(deepcopy=False)
    except KeyError:
        return collections.Counter()
    return collections.Counter(t.state for t in trials)


def test_resume_after_sigkill_finishes_the_budget(tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(
        sys.modules[__name__]
    )  # Ray workers cannot import tests/
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(spec_file(tmp_path)), url, str(tmp_path / "runs")],
        start_new_session=True,  # its own process group: Ray's helpers die with it below
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            states = _states(url)
            if states[TrialState.COMPLETE] >= 2 and states[TrialState.RUNNING] >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        states = _states(url)
        assert states[TrialState.COMPLETE] >= 2 and states[TrialState.RUNNING] >= 1, states

        # while the driver lives, a second driver is refused
        with pytest.raises(service.UserError, match="--join"):
            service.resume("killed", storage=url, trial_fn=fast)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    before = {
        t.number: t.values
        for t in optuna.load_study(study_name="killed", storage=url).trials
        if t.state == TrialState.COMPLETE
    }
    outcome = service.resume(
        "killed",
        storage=url,
        trial_fn=fast,
        options=DriverOptions(num_cpus=2, run_dir=str(tmp_path / "runs")),
    )
    assert outcome.status == "done", outcome.message

    trials = optuna.load_study(study_name="killed", storage=url).trials
    by_number = {t.number: t for t in trials}
    # nothing COMPLETE was lost or changed
    for number, values in before.items():
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].values == values
    # the dead driver's trials were interrupted and retried with the parameters they were given
    # (a trial killed while sampling stored only some of them)
    interrupted = [t for t in trials if t.user_attrs.get("interrupted") == "driver died"]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert interrupted and {t.number for t in interrupted} <= set(retries)
    for t in interrupted:
        assert retries[t.number].params == given_params(t)
    # the budget: every trial counts except those a retry replaced
    states = collections.Counter(t.state for t in trials if t.number not in retries)
    assert (
        states[TrialState.COMPLETE] + states[TrialState.PRUNED] + states[TrialState.FAIL]
        == N_TRIALS
    )
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    assert states[TrialState.COMPLETE] == N_TRIALS  # the fake trainer never fails
    # no duplicates: each configuration completed once, each metric stored once per step
    hashes = [t.user_attrs["config_hash"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(hashes) == len(set(hashes))
    store = open_store(url)
    try:
        info = store.get_study("killed")
        keys = [(r["trial_number"], r["step"], r["name"]) for r in store.metrics(info.id)]
        assert len(keys) == len(set(keys))
        assert info.status == "done" and info.driver_id is None
        assert store.events(info.id, kinds=["resumed"])
        hv = [h["n_complete"] for h in store.hypervolume_history(info.id)]
        assert hv == sorted(set(hv)) and hv[-1] == N_TRIALS
    finally:
        store.dispose()
