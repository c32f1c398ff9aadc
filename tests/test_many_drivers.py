"""Drivers on PostgreSQL: one killed with SIGKILL and resumed, two joined on one study, and the
budget check that keeps joined drivers from overshooting ``n_trials``.

Rule tested: whatever the number of drivers, a study ends with exactly ``n_trials`` trials
(rejected plans and requeued interrupted trials aside), every trial number once, every result
stored once.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from paretune.search.service import lifecycle as service
from paretune.search.service.driver import DriverOptions
from paretune.search.service.requeue import given_params
from paretune.search.service.searcher import FINISHED, SearchCore
from paretune.search.store.study_store import creating_schema, open_store
from paretune.spaces import parse_spec

FAKE_MODULE = """
import time

def train(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for step in eval_steps:
        time.sleep(PAUSE)
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}
"""


def spec_text(name: str, n_trials: int) -> str:
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
            "n_trials": n_trials,
            "max_steps": 9,
            "min_steps": 3,
            "scheduler": "none",
            "sampler": "random",
            "max_concurrent": 2,
            "max_retries": 2,
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def fast(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    for step in eval_steps:
        if not reporter(step, {"accuracy": 0.5 + 0.01 * step, "eval_loss": 0.5}):
            break
    return {}


def driver_env(tmp_path: Path, pause: float) -> dict[str, str]:
    (tmp_path / "ptfake_drivers.py").write_text(
        textwrap.dedent(FAKE_MODULE).replace("PAUSE", repr(pause))
    )
    return {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PARETUNE_TRIAL_FN": "ptfake_drivers:train",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def paretune(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("paretune")), *args]


def states(url: str, name: str) -> collections.Counter:
    try:  # while the driver creates the tables this plain Optuna client may collide with it
        study = creating_schema(lambda: optuna.load_study(study_name=name, storage=url), "test")
        trials = study.get_trials(deepcopy=False)
    except KeyError:
        return collections.Counter()
    return collections.Counter(t.state for t in trials)


def check_consistent(url: str, name: str, n_trials: int) -> list:
    """The budget rule, unique numbers, one metric row per (trial, step, name)."""
    trials = optuna.load_study(study_name=name, storage=url).trials
    replaced = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    counted = [t for t in trials if t.number not in replaced]
    assert len(counted) == n_trials, collections.Counter(t.state for t in trials)
    assert len({t.number for t in trials}) == len(trials)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    store = open_store(url)
    try:
        info = store.get_study(name)
        keys = [(r["trial_number"], r["step"], r["name"]) for r in store.metrics(info.id)]
        assert len(keys) == len(set(keys))
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        for t in complete:  # no lost result: both evaluations of every COMPLETE trial stored
            steps = {r["step"] for r in store.metrics(info.id, trial_number=t.number)}
            assert steps == {3, 9}, (t.number, steps)
        hv = store.hypervolume_history(info.id)
        assert hv and max(h["n_complete"] for h in hv) == len(complete)
    finally:
        store.dispose()
    return trials


def test_asking_is_atomic_across_drivers(postgres_url, monkeypatch):
    """Two drivers, each slow between its budget check and its ask, never overshoot."""
    name, n_trials = "atomic", 5
    setup = open_store(postgres_url)
    service.prepare_submit(setup, parse_spec(spec_text(name, n_trials), f"{name}.yaml"))
    setup.dispose()
    cores = []
    for _ in range(2):
        ctx = service.open_context(open_store(postgres_url), name)
        ask = ctx.study.ask

        def slow_ask(*args, _ask=ask, **kwargs):
            time.sleep(0.3)  # widen the window between the check and the ask
            return _ask(*args, **kwargs)

        monkeypatch.setattr(ctx.study, "ask", slow_ask)
        cores.append(SearchCore(ctx, driver_id=f"d{len(cores)}"))
    asked: list[list[int]] = [[], []]

    def run(i: int) -> None:
        while (out := cores[i].next_trial()) != FINISHED:
            asked[i].append(out["trial_number"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    numbers = asked[0] + asked[1]
    assert sorted(numbers) == list(range(n_trials)), asked
    assert asked[0] and asked[1]  # both drivers took part
    for core in cores:
        core.store.dispose()


def test_two_joined_drivers_spend_the_budget_exactly(postgres_url, tmp_path):
    name, n_trials = "joined", 12
    store = open_store(postgres_url)
    service.prepare_submit(store, parse_spec(spec_text(name, n_trials), f"{name}.yaml"))
    env = driver_env(tmp_path, 0.3)
    procs = [
        subprocess.Popen(
            paretune("resume", name, "--join", "--storage", postgres_url),
            env=env,
            cwd=tmp_path,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    trials = check_consistent(postgres_url, name, n_trials)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials
    info = store.get_study(name)
    started = store.events(info.id, kinds=["driver_started"])
    assert len({e["detail"]["driver"] for e in started}) == 2
    ran = collections.Counter(
        e["detail"]["pid"] for e in store.events(info.id, kinds=["trial_running"])
    )
    assert sum(ran.values()) == n_trials
    assert info.status == "done" and info.driver_id is None
    store.dispose()


def test_resume_after_sigkill_on_postgres(postgres_url, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    name, n_trials = "killedpg", 4
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(spec_text(name, n_trials))
    proc = subprocess.Popen(
        paretune("submit", str(spec), "--storage", postgres_url),
        env=driver_env(tmp_path, 1.0),
        cwd=tmp_path,
        start_new_session=True,  # its own process group: its Ray dies with it below
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts Ray slowly
        while time.monotonic() < deadline and proc.poll() is None:
            now = states(postgres_url, name)
            if now[TrialState.COMPLETE] >= 2 and now[TrialState.RUNNING] >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        now = states(postgres_url, name)
        assert now[TrialState.COMPLETE] >= 2 and now[TrialState.RUNNING] >= 1, now
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    outcome = service.resume(
        name,
        storage=postgres_url,
        trial_fn=fast,
        options=DriverOptions(num_cpus=2, run_dir=str(tmp_path / "runs")),
    )
    assert outcome.status == "done", outcome.message
    trials = check_consistent(postgres_url, name, n_trials)
    interrupted = [t for t in trials if t.user_attrs.get("interrupted") == "driver died"]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert interrupted and {t.number for t in interrupted} <= set(retries)
    assert all(retries[t.number].params == given_params(t) for t in interrupted)
    store = open_store(postgres_url)
    try:
        info = store.get_study(name)
        assert info.status == "done" and store.events(info.id, kinds=["resumed"])
    finally:
        store.dispose()


@pytest.fixture(autouse=True)
def _no_ray_left():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
