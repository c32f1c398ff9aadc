"""The Ray Tune function that runs one trial: it calls the trial function and reports each evaluation.

The trial function has the signature of :func:`paretune.trainers.train_trial`::

    train_trial(spec, config, reporter, *, max_steps, eval_steps, trial_dir=None) -> dict[str, float]

where ``reporter(step, metrics) -> bool`` is called after each evaluation; False stops training.
The driver passes it as a callable, or as an import path ``"module:function"`` (the default,
``paretune.trainers:train_trial``, is imported inside the Ray worker only, so the driver never
imports torch).

Every result reported to Tune carries ``trial_number`` (the Optuna trial) and ``step``. A trial
function that raises does not crash the Ray trial: its traceback travels in one last result under
:data:`ERROR_KEY`, so the searcher can keep it in the store.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

from paretune.spaces import SearchSpec, StudySpec, TrialConfig

TrialFn = Callable[..., Any]
DEFAULT_TRIAL_FN = "paretune.trainers:train_trial"
ERROR_KEY = "paretune_error"
TIMEOUT_KEY = "paretune_timeout"
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


def eval_steps(search: SearchSpec) -> list[int]:
    """Steps at which a trial evaluates: the rungs, every ``eval_every`` steps if set, and max_steps."""
    steps = set(search.rungs())
    if search.eval_every:
        steps.update(range(search.eval_every, search.max_steps + 1, search.eval_every))
    steps.add(search.max_steps)
    return sorted(s for s in steps if 0 < s <= search.max_steps)


def load_trial_fn(fn: TrialFn | str | None) -> TrialFn:
    """A callable from a callable, an import path ``"module:attr"``, or None (the real trainer)."""
    if callable(fn):
        return fn
    path = fn or DEFAULT_TRIAL_FN
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"trial function {path!r} must read 'module:function'")
    return getattr(importlib.import_module(module), attr)


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def run_trial(
    config: dict[str, Any],
    *,
    spec_json: str,
    trial_fn: TrialFn | str | None,
    max_steps: int,
    eval_steps: list[int],
    timeout_s: float | None = None,
) -> None:
    """The Ray Tune function trainable (see the module docstring)."""
    from ray import tune  # noqa: PLC0415

    number = int(config[TRIAL_KEY])
    last_step = 0
    started = time.monotonic()

    def reporter(step: int, metrics: dict[str, float]) -> bool:
        nonlocal last_step
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
        timed_out = timeout_s is not None and time.monotonic() - started > timeout_s
        if timed_out:
            result[TIMEOUT_KEY] = True
        last_step = int(step)
        tune.report(result)
        return not timed_out

    try:
        fn = load_trial_fn(trial_fn)
        spec = StudySpec.model_validate_json(spec_json)
        trial_config = TrialConfig.from_dict(config["config"])
        try:
            trial_dir = tune.get_context().get_trial_dir()
        except Exception:  # outside a Tune session (direct calls in tests)
            trial_dir = None
        fn(
            spec,
            trial_config,
            reporter,
            max_steps=max_steps,
            eval_steps=eval_steps,
            trial_dir=trial_dir,
        )
    except Exception:
        tune.report({TRIAL_KEY: number, STEP_KEY: last_step, ERROR_KEY: traceback.format_exc()})


def make_trainable(
    spec: StudySpec, trial_fn: TrialFn | str | None, *, spec_json: str | None = None
) -> Any:
    """``run_trial`` bound to this study, with the spec's per-trial resources."""
    from ray import tune  # noqa: PLC0415

    bound = tune.with_parameters(
        run_trial,
        spec_json=spec_json or spec.canonical_json(),
        trial_fn=trial_fn,
        max_steps=spec.search.max_steps,
        eval_steps=eval_steps(spec.search),
        timeout_s=spec.search.trial_timeout_s,
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(bound, resources)
