"""Studies that run on a Ray cluster as Ray Jobs: submit, job state, logs, stop.

``paretune submit SPEC --cluster http://HEAD:8265`` works in two steps:

1. here, on the client: the spec is checked and the study created in the store (paretune row
   with the spec, Optuna study), exactly as a foreground submit does; the study row gets the
   job id (chosen here, ``paretune-<study>-<random>``) and the cluster address;
2. on the cluster: a Ray Job whose entrypoint is ``paretune resume <study>``. The spec travels
   inside the store, so nothing but the study name is on the command line. The storage URL (with
   its password) travels in a file, ``paretune-storage.url``, in the job's ``runtime_env``
   ``working_dir`` (a package Ray uploads to the cluster); the job's ``env_vars`` only say which
   file (``PARETUNE_STORAGE_FILE``). Not the entrypoint, and not ``env_vars`` either: ``ray job
   list`` prints both, every environment variable with its value. ``--cluster-storage`` names a
   different URL for the cluster to use (a host name the cluster resolves), and
   ``--cluster-storage env`` passes none: the cluster's own ``$PARETUNE_STORAGE`` is used (as in
   ``docker-compose.yml``).

Both sides must reach the same database: PostgreSQL for a real cluster. A relative SQLite path
is made absolute, which is only right when the head node shares this file system.

The job client is :class:`ray.job_submission.JobSubmissionClient`; :data:`CLIENT_FACTORY` can be
replaced (tests use a fake one).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paretune.search.store.study_store import StudyInfo, StudyStore, open_store
from paretune.search.store.urls import (
    ENV_STORAGE,
    ENV_STORAGE_FILE,
    mask_text,
    mask_url,
)
from paretune.spaces import LoadedSpec
from paretune.spaces.errors import UserError

log = logging.getLogger(__name__)

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
ENV_TRIAL_FN = "PARETUNE_TRIAL_FN"  # "module:function": the trial function a job runs
STORAGE_FILE = "paretune-storage.url"
STOP_TIMEOUT_S = 60.0
AGENT_WAIT_S = 60.0  # a cluster that just started: how long to wait for its job agent
FROM_CLUSTER_ENV = "env"  # --cluster-storage env: the cluster's own $PARETUNE_STORAGE


class ClusterError(UserError):
    """The cluster cannot be reached, or refused the job."""


def _default_client(cluster: str) -> Any:
    from ray.job_submission import JobSubmissionClient  # noqa: PLC0415

    return JobSubmissionClient(cluster)


CLIENT_FACTORY: Callable[[str], Any] = _default_client


def job_client(cluster: str) -> Any:
    """A job client for the cluster's dashboard address (``http://HEAD:8265``)."""
    try:
        return CLIENT_FACTORY(cluster)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError from Ray
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {cluster}: {first}") from None


def absolute_storage(url: str) -> str:
    """A relative SQLite path made absolute: the job runs in another working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + os.path.abspath(url[len(prefix) :])
    return url


def new_job_id(study: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", study)[:60].strip("-") or "study"
    return f"paretune-{slug}-{uuid.uuid4().hex[:8]}"


def entrypoint(study: str) -> str:
    """The job's command line: the study name only, never the storage URL."""
    return f"paretune resume {shlex.quote(study)}"


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass(frozen=True)
class Submitted:
    study: str
    job_id: str
    cluster: str
    resumed: bool


def job_state(client: Any, job_id: str) -> str:
    """The job's state as Ray names it: PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED."""
    status = client.get_job_status(job_id)
    return str(getattr(status, "value", status))


def submit_to_cluster(
    loaded: LoadedSpec,
    *,
    cluster: str,
    storage: str,
    cluster_storage: str | None = None,
    resume_if_exists: bool = False,
    env: dict[str, str] | None = None,
) -> Submitted:
    """Create the study here and start its driver on the cluster as a Ray Job (module docstring)."""
    from paretune.search.service import lifecycle as service  # noqa: PLC0415

    url = absolute_storage(storage)
    client = job_client(cluster)  # an unreachable cluster fails before the study is created
    store = open_store(url)
    try:
        prepared = service.prepare_submit(store, loaded, resume_if_exists=resume_if_exists)
        name = loaded.spec.study
        info = store.get_study(name)
        if info.job_id and info.cluster:
            _refuse_if_job_runs(info)
        job_id = new_job_id(name)
        env_vars = {"RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        job_url = None
        if cluster_storage != FROM_CLUSTER_ENV:
            job_url = absolute_storage(cluster_storage or url)
        store.update_study(name, job_id=job_id, cluster=cluster, status="submitted")
        try:
            with tempfile.TemporaryDirectory(prefix="paretune-job-") as workdir:
                runtime_env: dict[str, Any] = {"env_vars": env_vars}
                if job_url is not None:
                    _write_private(os.path.join(workdir, STORAGE_FILE), job_url)
                    env_vars[ENV_STORAGE_FILE] = STORAGE_FILE
                    runtime_env["working_dir"] = workdir
                _submit_with_retry(
                    client,
                    entrypoint=entrypoint(name),
                    submission_id=job_id,
                    runtime_env=runtime_env,
                    metadata={"paretune_study": name},
                )
        except Exception as e:
            store.update_study(name, job_id=info.job_id, cluster=info.cluster, status=info.status)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterError(
                f"the Ray cluster at {cluster} refused the job: {mask_text(first, job_url)}"
            ) from None
        where = mask_url(job_url) if job_url else "$" + ENV_STORAGE
        store.log_event(
            info.id, "job_submitted", {"job_id": job_id, "cluster": cluster, "storage": where}
        )
        return Submitted(name, job_id, cluster, prepared.resumed)
    finally:
        store.dispose()


def _submit_with_retry(client: Any, *, wait_s: float = AGENT_WAIT_S, **job: Any) -> None:
    """``submit_job``, retried while a cluster that just started has no job agent ready yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as e:
            if "no available agent" not in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _refuse_if_job_runs(info: StudyInfo) -> None:
    try:
        state = job_state(job_client(str(info.cluster)), str(info.job_id))
    except ClusterError:
        return
    except Exception:  # the job is unknown to that cluster (restarted): nothing runs it there
        return
    if state not in TERMINAL:
        raise UserError(
            f"study {info.name!r} already runs as job {info.job_id} on {info.cluster} ({state}); "
            f"`paretune stop {info.name}` first"
        )


def job_of(store: StudyStore, name: str) -> tuple[StudyInfo, Any]:
    """The study and a client for its job; a study that never ran as a job is a user error."""
    info = store.get_study(name)
    if not info.job_id or not info.cluster:
        raise UserError(f"study {name!r} was not submitted to a cluster; it has no job")
    return info, job_client(info.cluster)


def job_summary(info: StudyInfo) -> dict[str, Any] | None:
    """``{"id", "cluster", "state"}`` for a study with a job (state "UNREACHABLE" when Ray is not)."""
    if not info.job_id or not info.cluster:
        return None
    try:
        state = job_state(job_client(info.cluster), info.job_id)
    except Exception as e:  # the cluster is gone or forgot the job: say so, do not fail `status`
        log.info("job %s of study %s: %s", info.job_id, info.name, e)
        state = "UNREACHABLE"
    return {"id": info.job_id, "cluster": info.cluster, "state": state}


def job_logs(name: str, *, storage: str) -> str:
    store = open_store(storage, create=False)
    try:
        info, client = job_of(store, name)
    finally:
        store.dispose()
    try:
        return str(client.get_job_logs(info.job_id))
    except Exception as e:
        raise ClusterError(f"no logs for job {info.job_id} on {info.cluster}: {e}") from None


def stop_job(
    name: str,
    *,
    storage: str,
    timeout_s: float = STOP_TIMEOUT_S,
    poll_s: float = 1.0,
) -> str:
    """Stop a study that runs as a job: ask its driver (running trials become interrupted), wait
    up to ``timeout_s`` for the job to end, then stop the job through Ray."""
    from paretune.search.service.driver import STOP_REQUESTED, driver_is_live  # noqa: PLC0415

    store = open_store(storage, create=False)
    try:
        info, client = job_of(store, name)
        state = job_state(client, info.job_id)
        if state in TERMINAL:
            return f"job {info.job_id} of study {name!r} has ended already ({state})"
        asked = driver_is_live(info)
        if asked:
            store.set_status(name, STOP_REQUESTED)
            store.log_event(info.id, "stop_requested", {"job_id": info.job_id})
        deadline = time.monotonic() + (timeout_s if asked else 0.0)
        while state not in TERMINAL and time.monotonic() < deadline:
            time.sleep(poll_s)
            state = job_state(client, info.job_id)
        if state in TERMINAL:
            return f"study {name!r} stopped; job {info.job_id} {state}"
        client.stop_job(info.job_id)
        store.log_event(
            info.id, "job_stopped", {"job_id": info.job_id, "after_s": timeout_s, "asked": asked}
        )
        if store.get_study(name).status in ("submitted", "created", "running", STOP_REQUESTED):
            store.set_status(name, "stopped")
        return f"study {name!r}: job {info.job_id} stopped through Ray"
    finally:
        store.dispose()
