"""Submitting a study to a Ray cluster as a Ray Job: submit, status, logs, stop.

The client logic runs against a fake job client; then a real local Ray head with its dashboard
(the job API) runs two studies on PostgreSQL: one to the end, one stopped midway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from paretune.search.cli.app import app
from paretune.search.service import cluster
from paretune.search.store.study_store import open_store
from paretune.spaces import parse_spec

runner = CliRunner()
PASSWORD = "s3cretpw"

FAKE_MODULE = """
import time

def train(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None):
    lora = config.plan.get("lora")
    rank = sum(r for _, _, r in lora.ranks) if lora else 0
    for i, step in enumerate(eval_steps):
        time.sleep(PAUSE if i else 0.0)
        acc = 0.5 + 0.4 * rank / (rank + 8) * step / max_steps
        if not reporter(step, {"accuracy": acc, "eval_loss": 1 - acc}):
            break
    return {}
"""


def spec_text(name: str, n_trials: int = 3) -> str:
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
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


def with_password(url: str) -> str:
    """The test server trusts every login; a password in the URL shows whether it leaks."""
    return re.sub(r"://([^:/@]+)@", rf"://\1:{PASSWORD}@", url, count=1)


# -- the client logic, against a fake job client -----------------------------------------------


class FakeJobs:
    """Records what paretune asks of Ray's JobSubmissionClient."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.states: dict[str, str] = {}
        self.stopped: list[str] = []
        self.storage_file: str | None = None

    def __call__(self, address: str) -> FakeJobs:
        self.address = address
        return self

    def submit_job(self, **kwargs: Any) -> str:
        workdir = kwargs["runtime_env"].get("working_dir")
        if workdir:  # Ray uploads the folder during submit_job: read it now
            self.storage_file = (Path(workdir) / cluster.STORAGE_FILE).read_text()
        self.submitted.append(kwargs)
        self.states[kwargs["submission_id"]] = "RUNNING"
        return kwargs["submission_id"]

    def get_job_status(self, job_id: str) -> str:
        return self.states[job_id]

    def get_job_logs(self, job_id: str) -> str:
        return f"log of {job_id}\n"

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        self.states[job_id] = "STOPPED"
        return True


def test_submit_to_a_fake_cluster_records_the_job_and_hides_the_password(sqlite_url, monkeypatch):
    jobs = FakeJobs()
    monkeypatch.setattr(cluster, "CLIENT_FACTORY", jobs)
    url = sqlite_url
    loaded = parse_spec(spec_text("fakejob"), "fakejob.yaml")
    done = cluster.submit_to_cluster(loaded, cluster="http://head:8265", storage=url)

    assert jobs.address == "http://head:8265"
    (job,) = jobs.submitted
    assert done.job_id == job["submission_id"] and done.job_id.startswith("paretune-fakejob-")
    assert job["entrypoint"] == "paretune resume fakejob"
    assert job["runtime_env"]["env_vars"][cluster.ENV_STORAGE_FILE] == cluster.STORAGE_FILE
    assert "PARETUNE_STORAGE" not in job["runtime_env"]["env_vars"]
    assert jobs.storage_file == url  # the URL travels in the uploaded working dir only
    store = open_store(url)
    try:
        info = store.get_study("fakejob")
        assert (info.job_id, info.cluster, info.status) == (
            done.job_id,
            "http://head:8265",
            "submitted",
        )
        assert store.events(info.id, kinds=["job_submitted"])
    finally:
        store.dispose()

    # a second submit while the job runs is refused
    with pytest.raises(cluster.UserError, match="already runs as job"):
        cluster.submit_to_cluster(
            loaded, cluster="http://head:8265", storage=url, resume_if_exists=True
        )

    out = runner.invoke(app, ["status", "fakejob", "--storage", url, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["job"] == {
        "id": done.job_id,
        "cluster": "http://head:8265",
        "state": "RUNNING",
    }
    out = runner.invoke(app, ["logs", "fakejob", "--storage", url])
    assert out.exit_code == 0 and out.stdout == f"log of {done.job_id}\n"

    # no live driver: stop goes to Ray at once
    out = runner.invoke(app, ["stop", "fakejob", "--storage", url, "--timeout", "1"])
    assert out.exit_code == 0, out.output
    assert jobs.stopped == [done.job_id]
    store = open_store(url)
    try:
        assert store.get_study("fakejob").status == "stopped"
    finally:
        store.dispose()


def test_the_submit_command_with_cluster_returns_at_once(sqlite_url, tmp_path, monkeypatch):
    jobs = FakeJobs()
    monkeypatch.setattr(cluster, "CLIENT_FACTORY", jobs)
    spec = tmp_path / "clijob.yaml"
    spec.write_text(spec_text("clijob"))
    args = ["submit", str(spec), "--storage", sqlite_url, "--cluster", "http://head:8265"]
    out = runner.invoke(app, [*args, "--cluster-storage", "env"])
    assert out.exit_code == 0, out.output
    (job,) = jobs.submitted
    assert f"job_id: {job['submission_id']}" in out.stdout and "study: clijob" in out.stdout
    assert cluster.ENV_STORAGE_FILE not in job["runtime_env"]["env_vars"]  # the cluster's own
    assert "working_dir" not in job["runtime_env"]
    out = runner.invoke(app, [*args, "--address", "head:6379"])
    assert out.exit_code != 0 and "exclude each other" in str(out.exception)


def test_an_unreachable_cluster_creates_no_study(sqlite_url, monkeypatch):
    def refuse(address: str) -> Any:
        raise ConnectionError(f"Failed to connect to Ray at address: {address}.")

    monkeypatch.setattr(cluster, "CLIENT_FACTORY", refuse)
    loaded = parse_spec(spec_text("unreached"), "unreached.yaml")
    with pytest.raises(cluster.ClusterError, match="cannot reach the Ray cluster at http://nohost"):
        cluster.submit_to_cluster(loaded, cluster="http://nohost:8265", storage=sqlite_url)
    store = open_store(sqlite_url)
    try:
        assert store.find_study("unreached") is None
    finally:
        store.dispose()


def test_storage_file_wins_over_the_environment(tmp_path, monkeypatch):
    from paretune.search.service.lifecycle import storage_url

    path = tmp_path / cluster.STORAGE_FILE
    path.write_text("sqlite:////from/file.db\n")
    monkeypatch.setenv(cluster.ENV_STORAGE_FILE, str(path))
    monkeypatch.setenv("PARETUNE_STORAGE", "sqlite:////from/env.db")
    assert storage_url() == "sqlite:////from/file.db"
    assert storage_url("sqlite:////from/cli.db") == "sqlite:////from/cli.db"


def test_a_study_without_a_job_has_no_logs(sqlite_url):
    from paretune.search.service import lifecycle as service

    service.prepare_submit(open_store(sqlite_url), parse_spec(spec_text("nojob"), "nojob.yaml"))
    out = runner.invoke(app, ["logs", "nojob", "--storage", sqlite_url])
    assert out.exit_code != 0 and "was not submitted to a cluster" in str(out.exception)


# -- a real Ray head with the job API ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` with the dashboard; its process group is killed afterwards."""
    temp = tempfile.mkdtemp(prefix="ptray", dir="/tmp")
    port, dash, client = _free_port(), _free_port(), _free_port()
    bin_dir = str(Path(sys.executable).parent)  # `paretune` on the PATH, as on a real cluster
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    ray = str(Path(bin_dir) / "ray")
    proc = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={client}",
            # every port free: other Ray clusters on this machine hold the default ones
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the Ray head with its dashboard did not start")
            time.sleep(1)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _job_env(tmp_path: Path, pause: float) -> dict[str, str]:
    module = tmp_path / "ptfake_jobs.py"
    module.write_text(textwrap.dedent(FAKE_MODULE).replace("PAUSE", repr(pause)))
    return {"PYTHONPATH": str(tmp_path), cluster.ENV_TRIAL_FN: "ptfake_jobs:train"}


def _wait_job(address: str, job_id: str, states: set[str], timeout_s: float) -> str:
    client = cluster.job_client(address)
    deadline = time.monotonic() + timeout_s
    state = cluster.job_state(client, job_id)
    while state not in states and time.monotonic() < deadline:
        time.sleep(1)
        state = cluster.job_state(client, job_id)
    return state


def test_a_study_runs_as_a_ray_job(ray_head, postgres_url, tmp_path):
    url = with_password(postgres_url)
    loaded = parse_spec(spec_text("onjob", n_trials=3), "onjob.yaml")
    done = cluster.submit_to_cluster(
        loaded, cluster=ray_head, storage=url, env=_job_env(tmp_path, 0.0)
    )
    state = _wait_job(ray_head, done.job_id, cluster.TERMINAL, 150)
    client = cluster.job_client(ray_head)
    logs = client.get_job_logs(done.job_id)
    assert state == "SUCCEEDED", logs[-3000:]
    assert PASSWORD not in repr(client.list_jobs())
    assert PASSWORD not in logs

    trials = optuna.load_study(study_name="onjob", storage=postgres_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    store = open_store(postgres_url)
    try:
        info = store.get_study("onjob")
        assert (info.status, info.job_id, info.cluster) == ("done", done.job_id, ray_head)
        assert PASSWORD not in json.dumps(store.events(info.id), default=str)
    finally:
        store.dispose()

    out = runner.invoke(app, ["status", "onjob", "--storage", postgres_url])
    assert out.exit_code == 0 and f"job {done.job_id}" in out.stdout and "SUCCEEDED" in out.stdout
    out = runner.invoke(app, ["logs", "onjob", "--storage", postgres_url])
    assert out.exit_code == 0 and "onjob: done" in out.stdout


def test_stop_ends_a_running_job_cleanly(ray_head, postgres_url, tmp_path):
    loaded = parse_spec(spec_text("stopjob", n_trials=8), "stopjob.yaml")
    done = cluster.submit_to_cluster(
        loaded, cluster=ray_head, storage=postgres_url, env=_job_env(tmp_path, 3.0)
    )
    deadline = time.monotonic() + 120
    running: list[Any] = []
    while time.monotonic() < deadline and not running:
        try:
            study = optuna.load_study(study_name="stopjob", storage=postgres_url)
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except KeyError:
            pass
        time.sleep(0.5)
    assert running, cluster.job_client(ray_head).get_job_logs(done.job_id)[-3000:]

    out = runner.invoke(app, ["stop", "stopjob", "--storage", postgres_url, "--timeout", "60"])
    assert out.exit_code == 0, out.output
    assert "stopped" in out.output
    assert _wait_job(ray_head, done.job_id, cluster.TERMINAL, 30) in cluster.TERMINAL
    trials = optuna.load_study(study_name="stopjob", storage=postgres_url).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    store = open_store(postgres_url)
    try:
        assert store.get_study("stopjob").status == "stopped"
    finally:
        store.dispose()
