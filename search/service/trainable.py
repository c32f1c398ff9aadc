"""The Ray Tune function that runs one trial: it calls the trial function and reports each evaluation.

The trial function has the signature of :func:`paretune.trainers.train_trial`::

    train_trial(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None) -> dict[str, float]

where ``reporter(step, metrics) -> bool`` is called after each evaluation; False stops training.
The driver passes it as a callable, or as an import path ``"module:function"`` (the default,
``paretune.trainers:train_trial``, is imported inside the Ray worker only, so the driver never
imports torch).

Every result reported to Tune carries ``trial_number`` (the Optuna trial) and ``step``. A trial
function that raises does not crash the Ray trial: its traceback travels in one last result under
:data:`ERROR_KEY`, so the searcher can keep it in the store. A reported NaN or infinite metric
raises :class:`NonFiniteMetricError` in the reporter: the trial stops at once and fails. Past
``search.trial_timeout_s`` the reporter marks the result (:data:`TIMEOUT_KEY`) and asks the trial
to stop; the searcher ends it FAIL with reason ``timeout`` (and kills one that stops reporting).
A result whose ``peak_memory_mb`` is above ``search.constraints.max_peak_memory_mb`` is marked
(:data:`MEMORY_KEY`) and stops the trial too: the searcher ends it PRUNED and infeasible, so an
adapter too big for the memory a user has costs no more steps.
``trial_dir`` is ``<run dir>/trials/trial-<number>-<ray id>`` (:func:`artifact_trial_dir`): the
trial function writes its checkpoints and adapter there. A config with :data:`RESUME_KEY` starts
from that checkpoint, copied into ``trial_dir`` first (:func:`seed_checkpoint`).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable
from typing import Any

from paretune.spaces import SearchSpec, StudySpec, TrialConfig

log = logging.getLogger(__name__)

TrialFn = Callable[..., Any]
DEFAULT_TRIAL_FN = "paretune.trainers:train_trial"
ERROR_KEY = "paretune_error"
TIMEOUT_KEY = "paretune_timeout"
MEMORY_KEY = "paretune_over_memory"
NODE_KEY = "paretune_node"  # the Ray node id of the worker that runs the trial
TRIAL_DIR_KEY = "paretune_trial_dir"
# Which keys of a result the trial function reported, as "accuracy,eval_loss,...": the searcher
# stores exactly those (Ray adds its own keys to every result).
KEYS_KEY = "paretune_keys"
# Ray Tune's own result keys and ours: a metric of the same name is not passed through.
RESERVED = frozenset(
    {
        "done",
        "training_iteration",
        "trial_id",
        "timestamp",
        "date",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "hostname",
        "node_ip",
        "config",
        "experiment_tag",
        "time_since_restore",
        "iterations_since_restore",
        "checkpoint_dir_name",
        "should_checkpoint",
    }
)
STEP_KEY = "step"
TRIAL_KEY = "trial_number"
# A checkpoint the trial starts from (a continuation's parent, an interrupted trial's last one):
# copied into the trial's own directory before training, never written to.
RESUME_KEY = "resume_checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"  # paretune.trainers.loop.CHECKPOINT (search never imports torch)


def eval_steps(search: SearchSpec) -> list[int]:
    """Steps at which a trial evaluates: the rungs, every ``eval_every`` steps if set, and max_steps."""
    steps = set(search.rungs())
    if search.eval_every:
        steps.update(range(search.eval_every, search.max_steps + 1, search.eval_every))
    steps.add(search.max_steps)
    return sorted(s for s in steps if 0 < s <= search.max_steps)


def seed_checkpoint(source: str | None, trial_dir: str | None) -> bool:
    """Copy ``source`` to ``trial_dir/checkpoint.pt`` unless the trial has a checkpoint of its own
    (a Ray restart of the same trial). True when the trial now starts from ``source``."""
    if not source or not trial_dir:
        return False
    target = os.path.join(trial_dir, CHECKPOINT_FILE)
    if os.path.exists(target):
        return False
    if not os.path.isfile(source):
        log.warning("checkpoint %s is not here: the trial trains from step 0", source)
        return False
    os.makedirs(trial_dir, exist_ok=True)
    tmp = target + ".copy"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)  # never a half-copied checkpoint
    return True


def artifact_trial_dir(artifacts_dir: str | None, ray_dir: str | None) -> str | None:
    """``<artifacts_dir>/trials/<Ray's trial dir name>``: checkpoints and the adapter stay with the
    study (Ray's own trial dir lives in its session directory under /tmp). Ray's dir when the
    artifact directory cannot be made here."""
    if not artifacts_dir or not ray_dir:
        return ray_dir
    path = os.path.join(artifacts_dir, "trials", os.path.basename(ray_dir.rstrip("/")))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        log.warning("cannot use %s (%s): trial files go to %s", path, e, ray_dir)
        return ray_dir
    return path


def load_trial_fn(fn: TrialFn | str | None) -> TrialFn:
    """A callable from a callable, an import path ``"module:attr"``, or None (the real trainer)."""
    if callable(fn):
        return fn
    path = fn or DEFAULT_TRIAL_FN
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"trial function {path!r} must read 'module:function'")
    return getattr(importlib.import_module(module), attr)


def _node_id() -> str | None:
    import ray  # noqa: PLC0415

    if not ray.is_initialized():  # outside a Ray worker: asking would start a local Ray
        return None
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker (direct calls in tests)
        return None


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class NonFiniteMetricError(FloatingPointError):
    """A trial reported NaN or infinity: it ends at once as FAIL (reason ``nan``)."""


def check_finite(step: int, metrics: dict[str, Any]) -> None:
    """Raise :class:`NonFiniteMetricError` when a reported number is NaN or infinite."""
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise NonFiniteMetricError(f"metric {key} is {value} at step {step}")


def _free_memory() -> None:
    """After an out-of-memory error, give the memory back before this worker runs another trial."""
    import gc  # noqa: PLC0415
    import sys  # noqa: PLC0415

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_trial(
    config: dict[str, Any],
    *,
    spec_json: str,
    trial_fn: TrialFn | str | None,
    max_steps: int,
    eval_steps: list[int],
    timeout_s: float | None = None,
    artifacts_dir: str | None = None,
) -> None:
    """The Ray Tune function trainable (see the module docstring)."""
    from ray import tune  # noqa: PLC0415

    number = int(config[TRIAL_KEY])
    last_step = 0
    trial_dir: str | None = None
    started = time.monotonic()
    memory_limit: float | None = None

    def reporter(step: int, metrics: dict[str, float]) -> bool:
        nonlocal last_step
        check_finite(step, metrics)
        result: dict[str, Any] = {
            k: v
            for k, v in _numeric(metrics).items()
            if k not in RESERVED and not k.startswith("paretune_")
        }
        result.pop(STEP_KEY, None)
        result.pop(TRIAL_KEY, None)
        if "trainable_params" not in result and config.get("trainable_params") is not None:
            result["trainable_params"] = float(config["trainable_params"])
        result[KEYS_KEY] = ",".join(sorted(result))
        result[STEP_KEY] = int(step)
        result[TRIAL_KEY] = number
        result[NODE_KEY] = _node_id()
        if trial_dir is not None:
            result[TRIAL_DIR_KEY] = str(trial_dir)
        timed_out = timeout_s is not None and time.monotonic() - started > timeout_s
        if timed_out:
            result[TIMEOUT_KEY] = True
        over = memory_limit is not None and result.get("peak_memory_mb", 0.0) > memory_limit
        if over:
            result[MEMORY_KEY] = True
        last_step = int(step)
        tune.report(result)
        return not (timed_out or over)

    try:
        fn = load_trial_fn(trial_fn)
        spec = StudySpec.model_validate_json(spec_json)
        memory_limit = spec.search.constraints.max_peak_memory_mb
        trial_config = TrialConfig.from_dict(config["config"])
        try:
            trial_dir = os.path.abspath(tune.get_context().get_trial_dir())
        except Exception:  # outside a Tune session (direct calls in tests)
            trial_dir = None
        trial_dir = artifact_trial_dir(artifacts_dir, trial_dir)
        seed_checkpoint(config.get(RESUME_KEY), trial_dir)
        fn(
            spec,
            trial_config,
            reporter,
            max_steps=max_steps,
            eval_steps=eval_steps,
            trial_dir=trial_dir,
        )
    except Exception as e:  # MemoryError and torch's OutOfMemoryError included
        tb = traceback.format_exc()
        if isinstance(e, MemoryError) or "OutOfMemoryError" in type(e).__name__:
            _free_memory()
        tune.report({TRIAL_KEY: number, STEP_KEY: last_step, ERROR_KEY: tb})


def make_trainable(
    spec: StudySpec,
    trial_fn: TrialFn | str | None,
    *,
    spec_json: str | None = None,
    artifacts_dir: str | None = None,
) -> Any:
    """``run_trial`` bound to this study, with the spec's per-trial resources; trial files go
    under ``artifacts_dir`` (the study's run directory) when given."""
    from ray import tune  # noqa: PLC0415

    bound = tune.with_parameters(
        run_trial,
        spec_json=spec_json or spec.canonical_json(),
        trial_fn=trial_fn,
        max_steps=spec.search.max_steps,
        eval_steps=eval_steps(spec.search),
        timeout_s=spec.search.trial_timeout_s,
        artifacts_dir=artifacts_dir,
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(bound, resources)
