"""One trial, end to end: model, data, plan, training, reports. What a Ray trial calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from paretune.spaces import (
    TEST_METRICS,
    StudySpec,
    TrialConfig,
    count_trainable,
    dims_from_config,
    resolve_model,
)
from paretune.spaces.architectures import ModelDims
from paretune.spaces.models import ModelSource
from paretune.spaces.space import lowest_adapted_layer

from .data import TokenizedSplits, prepare_data
from .first_token import FirstTokenRunner, supports_first_token
from .injectors import apply_plan, count_requires_grad, route_kernels
from .loop import Reporter, evaluate, train
from .models import load_model, load_tokenizer, tokenizer_key
from .precision import precision_name, resolve_precision
from .prefix import FEATURES, FrozenPrefix, supports_frozen_prefix
from .sft import sft_steps
from .sft_data import SftSplits, end_of_text, prepare_sft_data

log = logging.getLogger(__name__)

_data_lock = threading.Lock()
_data: dict[tuple[str, str], TokenizedSplits | SftSplits] = {}


def task_data(spec: StudySpec, source: ModelSource) -> TokenizedSplits | SftSplits:
    """Tokenised splits, loaded once per worker process (classification data is also cached on
    disk across processes)."""
    key = (spec.task.model_dump_json(), tokenizer_key(source))
    prepare = prepare_sft_data if spec.task.type == "causal_lm" else prepare_data
    with _data_lock:
        if key not in _data:
            _data[key] = prepare(spec.task, load_tokenizer(source), tokenizer_key(source))
        return _data[key]


def device_for(spec: StudySpec) -> torch.device:
    if spec.resources.gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(spec: StudySpec) -> None:
    """Use exactly the CPUs the trial was granted."""
    torch.set_num_threads(max(1, int(round(spec.resources.cpus))))


def build_trial_model(
    spec: StudySpec, config: TrialConfig
) -> tuple[torch.nn.Module, ModelDims, TokenizedSplits, int]:
    """The adapted model of a configuration, its dimensions, the data and the padding id."""
    source = resolve_model(
        spec.model.name,
        trust_remote_code=spec.model.trust_remote_code,
        revision=spec.model.revision,
    )
    data = task_data(spec, source)
    dims = dims_from_config(source.config, data.num_labels, spec.task.type)
    tokenizer = load_tokenizer(source)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    model = load_model(source, data.num_labels, pad_id, spec.task.type)
    model = apply_plan(model, config.plan, dims, seed=config.hparams.seed)
    return model, dims, data, pad_id


def train_trial(
    spec: StudySpec,
    config: TrialConfig,
    reporter: Reporter,
    *,
    max_steps: int,
    eval_steps: Sequence[int] = (),
    trial_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    test_split: bool = False,
) -> dict[str, float]:
    """Train one configuration; ``reporter(step, metrics)`` gets every evaluation and may stop it.

    ``trial_dir``: where checkpoints (and the final adapter) go; a checkpoint found there is
    continued from. Metrics: accuracy, macro_f1, eval_loss, trainable_params, train_seconds,
    peak_memory_mb (and train_loss). ``test_split``: once trained to ``max_steps``, also evaluate
    on the test split (test_accuracy, test_macro_f1, test_loss) where the task has one. A search
    never asks for it, so no choice a search makes has seen the test split.
    """
    set_threads(spec)
    model, dims, data, pad_id = build_trial_model(spec, config)
    device = device_for(spec)
    precision = resolve_precision(spec.training.precision, device)
    if device.type == "cuda":  # each family routes what needs it (paretune's modules need not)
        route_kernels(model, config.plan)
    trainable = count_requires_grad(model)
    expected = count_trainable(config.plan, dims)
    if trainable != expected:  # the analytic count is a promise to the user: flag any drift
        log.error("trainable parameters %d differ from the analytic count %d", trainable, expected)
    if trial_dir is not None:
        Path(trial_dir).mkdir(parents=True, exist_ok=True)
    reached: list[int] = []
    if trial_dir is not None:
        reporter = saving_final_adapter(
            reporter, model, config, dims, Path(trial_dir), max_steps, spec.model.name
        )
    steps = None
    if spec.task.type == "causal_lm":
        # the frozen-prefix and first-token paths compute a classifier's logits: off here
        runner = None
        steps = causal_lm_steps(spec, build_tokenizer(spec), pad_id, device, precision)
    else:
        runner = prefix_runner(
            spec, model, dims, config, source_key=_source_key(spec), data=data, precision=precision
        )
    metrics = train(
        model,
        data.train,
        data.validation,
        config.hparams,
        num_labels=data.num_labels,
        pad_id=pad_id,
        max_steps=max_steps,
        eval_steps=eval_steps,
        reporter=reporter,
        static_metrics={"trainable_params": float(trainable)},
        device=device,
        checkpoint_dir=trial_dir,
        progress=progress,
        max_grad_norm=spec.training.max_grad_norm,
        runner=runner,
        reached=reached,
        precision=precision,
        pad_to_multiple_of=spec.training.pad_to_multiple_of,
        eval_batch_size=spec.training.eval_batch_size,
        task=steps,
    )
    if test_split and len(data.test) and reached and reached[-1] >= max_steps:
        if steps is not None:
            held_out = steps.evaluate(model, data.test)
        else:
            held_out = evaluate(
                model,
                data.test,
                pad_id,
                data.num_labels,
                device,
                batch_size=spec.training.eval_batch_size,
                runner=runner,
                split="test",
                precision=precision,
                pad_to_multiple_of=spec.training.pad_to_multiple_of,
            )
        metrics.update(test_metrics(held_out))
        if trial_dir is not None:
            # the adapter saved at max_steps, again with the test figures in its paretune.json
            save_final_adapter(
                model, config, dims, Path(trial_dir), metrics, model_name=spec.model.name
            )
    return metrics


def build_tokenizer(spec: StudySpec) -> Any:
    return load_tokenizer(
        resolve_model(spec.model.name, trust_remote_code=spec.model.trust_remote_code)
    )


def causal_lm_steps(
    spec: StudySpec, tokenizer: Any, pad_id: int, device: torch.device, precision: Any
) -> Any:
    """The loop's batches, completion-only loss and SFT evaluation for ``spec``."""
    return sft_steps(
        pad_id=pad_id,
        device=device,
        tokenizer=tokenizer,
        stop_id=end_of_text(tokenizer),
        generate_examples=spec.task.generate_examples,
        max_new_tokens=spec.task.max_new_tokens,
        batch_size=min(spec.training.eval_batch_size, 32),
        precision=precision,
        pad_to_multiple_of=spec.training.pad_to_multiple_of,
    )


def saving_final_adapter(
    reporter: Reporter,
    model: torch.nn.Module,
    config: TrialConfig,
    dims: ModelDims,
    trial_dir: Path,
    max_steps: int,
    model_name: str | None,
) -> Reporter:
    """``reporter`` that first saves the adapter when the evaluation is at full fidelity.

    The adapter has to be on disk before that last report: a scheduler answers it with STOP
    (every trial is complete at ``max_steps``), and Ray may end the trial's function there,
    before it returns."""

    def report(step: int, metrics: dict[str, float]) -> bool:
        if step >= max_steps:
            save_final_adapter(model, config, dims, trial_dir, metrics, model_name=model_name)
        return reporter(step, metrics)

    return report


def test_metrics(evaluation: dict[str, float]) -> dict[str, float]:
    """An evaluation of the test split under the names the reports use."""
    return {TEST_METRICS.get(k, f"test_{k}"): v for k, v in evaluation.items()}


def _source_key(spec: StudySpec) -> str:
    return resolve_model(spec.model.name, trust_remote_code=spec.model.trust_remote_code).cache_key


def prefix_runner(
    spec: StudySpec,
    model: torch.nn.Module,
    dims: ModelDims,
    config: TrialConfig,
    *,
    source_key: str,
    data: TokenizedSplits,
    precision: torch.dtype | None = None,
) -> FrozenPrefix | FirstTokenRunner | None:
    """How a trial's forward pass runs: the frozen-prefix path when the plan leaves blocks at the
    bottom untouched, and the last block on the first token only where the head reads nothing
    else; None for the model's own forward."""
    first_token = spec.training.first_token_head and supports_first_token(model, dims)
    k = lowest_adapted_layer(config.plan, dims)
    if not spec.training.frozen_prefix or not supports_frozen_prefix(dims) or k == 0:
        return FirstTokenRunner(model, dims) if first_token else None
    cache = FEATURES if spec.training.prefix_cache else None
    return FrozenPrefix(
        model,
        dims,
        k,
        cache=cache,
        cache_key=(source_key, data.key, spec.task.max_length, precision_name(precision)),
        first_token=first_token,
        store_dtype=torch.bfloat16 if precision == torch.bfloat16 else None,
    )


def save_final_adapter(
    model: torch.nn.Module,
    config: TrialConfig,
    dims: ModelDims,
    trial_dir: Path,
    metrics: dict[str, float],
    *,
    model_name: str | None = None,
) -> None:
    """Keep the trained adapter of a full-fidelity trial for ``paretune export``."""
    try:
        from .export import save_adapter  # noqa: PLC0415
    except ImportError:  # export not available in this build
        return
    save_adapter(model, config, dims, trial_dir / "adapter", metrics, model_name=model_name)


def always_continue(step: int, metrics: dict[str, Any]) -> bool:
    return True
