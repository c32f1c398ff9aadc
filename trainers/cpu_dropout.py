"""Faster dropout while a model trains on the CPU: hidden-state and attention-probability dropout.

A BERT-sized model draws about 20 dropout masks per step; torch draws them one Bernoulli sample
per element, a large share of a CPU training step (docs/training.md, "dropout").
``fast_cpu_dropout(model)`` makes, for the duration of a ``with`` block:

- every plain ``nn.Dropout`` a ``FastDropout`` (a class swap: no parameter or state-dict name
  changes; the masks come from ``paretune.kernels.fast_dropout``, drawn from torch's default
  generator so ``torch.manual_seed`` still fixes them);
- models that use the ``sdpa`` attention of transformers use ``paretune_cpu_sdpa``: on CPU
  tensors it computes softmax attention itself, with the fast mask when attention dropout is on
  (what ``sdpa`` does there anyway: its CPU flash kernel has no dropout, so it falls back to the
  math path). Eval-mode calls inside the block (the frozen prefix, the evaluations at the rungs)
  take the same path up to ``EVAL_MATH_MAX_KEYS`` tokens, where it measured faster than sdpa's
  CPU flash kernel (``benchmarks/eval_attention.py``; figures in docs/training.md). Every other
  call goes to ``sdpa``
  unchanged (longer eval-mode calls, CUDA, grouped or causal-without-mask attention, position
  bias, caches, attention weights asked for).

Same distribution, different random stream; CUDA tensors always take torch's own dropout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from paretune.kernels import fast_dropout

ATTENTION_NAME = "paretune_cpu_sdpa"
# Calls without dropout take the math path up to this many key tokens; beyond it sdpa's CPU flash
# kernel wins (benchmarks/eval_attention.py, docs/training.md).
EVAL_MATH_MAX_KEYS = 64


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with ``fast_dropout``'s masks on CPU tensors (made by class swap only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return fast_dropout.dropout(x, self.p)


def _simple_enough(module: nn.Module, query: torch.Tensor, mask: Any, kwargs: dict) -> bool:
    if query.device.type != "cpu" or getattr(module, "num_key_value_groups", 1) != 1:
        return False
    if kwargs.get("position_bias") is not None or kwargs.get("cache") is not None:
        return False
    if kwargs.get("softcap") is not None or kwargs.get("output_attentions"):
        return False
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", False) if is_causal is None else is_causal
    return not (mask is None and is_causal)


def cpu_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: [b, h, q, d] in, [b, q, h, d] out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: PLC0415

    masks = dropout > 0.0 and module.training
    too_long = not masks and key.shape[-2] > EVAL_MATH_MAX_KEYS
    if too_long or not _simple_enough(module, query, attention_mask, kwargs):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    if masks:
        probs = fast_dropout.dropout(probs, dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface  # noqa: PLC0415
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask  # noqa: PLC0415

    AttentionInterface.register(ATTENTION_NAME, cpu_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)


def _configs(model: nn.Module) -> list[Any]:
    seen: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa":
            seen[id(config)] = config
    return list(seen.values())


@contextlib.contextmanager
def fast_cpu_dropout(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s dropout draws its masks the fast way (see the module doc)."""
    _register()
    swapped = [m for m in model.modules() if type(m) is nn.Dropout]
    configs = _configs(model)
    for m in swapped:
        m.__class__ = FastDropout
    for config in configs:
        config._attn_implementation = ATTENTION_NAME
    try:
        yield
    finally:
        for m in swapped:
            m.__class__ = nn.Dropout
        for config in configs:
            config._attn_implementation = "sdpa"
