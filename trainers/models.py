"""Loading base models and tokenizers, once per worker process.

A search trains hundreds of configurations of the same base model; reading the weights from
disk each time would dominate short trials. The first load keeps a pristine copy in memory and
every trial gets a deep copy of it.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from paretune.spaces.errors import ModelError
from paretune.spaces.models import ModelSource

from .builtin_weights import ensure_weights

log = logging.getLogger(__name__)

_lock = threading.Lock()
_models: dict[tuple[str, int, str], nn.Module] = {}
_tokenizers: dict[str, Any] = {}
RANDOM_INIT_SEED = 1234  # tiny random models are the same "pretrained" model in every trial


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(source: ModelSource) -> Any:
    """The source's tokenizer (cached per process); decoder models get a padding token."""
    with _lock:
        if source.tokenizer_dir not in _tokenizers:
            _quiet_transformers()
            from transformers import AutoTokenizer  # noqa: PLC0415

            try:
                ensure_weights(source)
                tok = AutoTokenizer.from_pretrained(
                    source.tokenizer_dir,
                    trust_remote_code=source.trust_remote_code,
                    **source.load_kwargs,
                )
            except Exception as e:
                raise ModelError(f"cannot load the tokenizer of {source.name!r}: {e}") from e
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token or tok.unk_token
            _tokenizers[source.tokenizer_dir] = tok
        return _tokenizers[source.tokenizer_dir]


def tokenizer_key(source: ModelSource) -> str:
    """Identifies the tokenizer in data caches."""
    return f"{source.tokenizer_dir}"


class _NoTTY:
    """A stream that answers ``isatty()``: Ray workers replace stdout with one that cannot."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def _streams_with_isatty() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None and not hasattr(sys.stdout, "isatty"):
        sys.stdout = _NoTTY(sys.stdout)
    if sys.stderr is not None and not hasattr(sys.stderr, "isatty"):
        sys.stderr = _NoTTY(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _build(source: ModelSource, num_labels: int, pad_token_id: int, task: str) -> nn.Module:
    with _streams_with_isatty():
        return _build_model(source, num_labels, pad_token_id, task)


def _build_model(source: ModelSource, num_labels: int, pad_token_id: int, task: str) -> nn.Module:
    _quiet_transformers()
    from transformers import (  # noqa: PLC0415
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )

    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    head = {"num_labels": num_labels} if task != "causal_lm" else {}
    cfg = dict(source.config)
    try:
        if source.weights_dir is None:
            model_type = cfg.pop("model_type")
            config = AutoConfig.for_model(model_type, **cfg)
            if head:
                config.num_labels = num_labels
            config.pad_token_id = pad_token_id
            with torch.random.fork_rng():
                torch.manual_seed(RANDOM_INIT_SEED)
                model = auto.from_config(config)
        else:
            ensure_weights(source)
            model = auto.from_pretrained(
                source.weights_dir,
                trust_remote_code=source.trust_remote_code,
                pad_token_id=pad_token_id,
                **head,
                **source.load_kwargs,
            )
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"cannot load model {source.name!r}: {e}") from e
    model.config.pad_token_id = pad_token_id
    if source.gguf_file:
        dequantised(model)
    return model


def dequantised(model: nn.Module) -> None:
    """Drop the GGUF quantisation marks of a model transformers has dequantised to float: its
    weights are plain tensors, and the marks make ``Trainer`` refuse to train it."""
    for attr, value in (("hf_quantizer", None), ("is_quantized", False)):
        if hasattr(model, attr):
            setattr(model, attr, value)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def load_model(
    source: ModelSource, num_labels: int, pad_token_id: int = 0, task: str = "classification"
) -> nn.Module:
    """A fresh, trainable copy of the base model: with a ``num_labels`` classification head, or
    (``task="causal_lm"``) as a causal LM with its own LM head.

    The head is initialised the same way in every call (seeded), so two trials of the same
    configuration and seed start from identical weights.
    """
    key = (source.cache_key, num_labels if task != "causal_lm" else 0, task)
    with _lock:
        if key not in _models:
            with torch.random.fork_rng():
                torch.manual_seed(RANDOM_INIT_SEED)
                base = _build(source, num_labels, pad_token_id, task)
            base.eval()
            _models[key] = base
        model = copy.deepcopy(_models[key])
    model.train()
    return model


def clear_cache() -> None:
    with _lock:
        _models.clear()
        _tokenizers.clear()
