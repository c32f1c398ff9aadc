"""The frozen-prefix path: blocks below the lowest adapter run without autograd, once.

When no adapter sits below block ``k``, the embeddings and blocks ``0..k-1`` compute the same
function at every step, so their output ``h_k`` for an example never changes. This module runs
them under ``torch.inference_mode`` (dropout off: they are frozen) and, with the cache on, keeps
``h_k`` per example and reuses it across steps, epochs and trials of the same worker. The
trainable part of the model then runs from block ``k`` on, fed by a stand-in for the
embeddings module.

Effect on training: dropout inside the frozen blocks is off (it stays on in the trainable
blocks), and nothing else changes: in eval mode logits and gradients equal the plain path's.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims

from .first_token import first_token_blocks
from .injectors.placement import hf_model, module_slot, swapped

CACHE_LIMIT_MB = float(os.environ.get("PARETUNE_PREFIX_CACHE_MB", "4096"))


class FeatureCache:
    """Per-process store of per-example prefix outputs, keyed by what makes them valid."""

    def __init__(self, limit_mb: float = CACHE_LIMIT_MB) -> None:
        self.limit_bytes = limit_mb * 2**20
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._tables: dict[tuple[Any, ...], dict[int, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def table(self, key: tuple[Any, ...]) -> dict[int, torch.Tensor]:
        with self._lock:
            return self._tables.setdefault(key, {})

    def put(self, table: dict[int, torch.Tensor], example: int, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if self.bytes + size > self.limit_bytes:
            return  # full: compute instead of caching, never fail
        table[example] = value
        self.bytes += size

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self.bytes = self.hits = self.misses = 0

    def keys(self) -> list[tuple[Any, ...]]:
        return list(self._tables)


FEATURES = FeatureCache()


class _Captured(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


class _Feeder(nn.Module):
    """Stands in for the embeddings module: returns the prefix output for the current batch."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.hidden


def supports_frozen_prefix(dims: ModelDims) -> bool:
    return dims.embeddings is not None


class FrozenPrefix:
    """Forward passes that start at block ``k``; the prefix comes from the cache or a no-grad run.

    ``cache_key`` identifies the base model, the data and ``max_length``; the split and ``k`` are
    added here, so a change of any of them uses other entries.
    """

    def __init__(
        self,
        model: nn.Module,
        dims: ModelDims,
        k: int,
        *,
        cache: FeatureCache | None = FEATURES,
        cache_key: tuple[Any, ...] = (),
        first_token: bool = False,
        store_dtype: torch.dtype | None = None,
    ) -> None:
        if dims.embeddings is None:
            raise ValueError(f"the frozen-prefix path does not support {dims.arch}")
        self.model = model
        self.dims = dims
        self.k = k
        self.cache = cache
        self.cache_key = cache_key
        self.first_token = first_token  # the last block on the first token only (first_token.py)
        # Under bf16 autocast the cache keeps features in bf16: half the memory, and the trainable
        # block's products read them in bf16 anyway. With the cache on, computed and cached
        # features are rounded alike and fed on in fp32 (the residual stream's dtype under
        # autocast), so whether the cache was warm changes no result.
        self.store_dtype = store_dtype
        root = hf_model(model)
        self._blocks_parent, self._blocks_attr = module_slot(root, dims.block_path)
        self._emb_parent, self._emb_attr = module_slot(root, dims.embeddings)
        self.blocks: nn.ModuleList = getattr(self._blocks_parent, self._blocks_attr)
        self.embeddings: nn.Module = getattr(self._emb_parent, self._emb_attr)

    def _compute(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run embeddings and blocks 0..k-1 (eval mode, inference mode) and return block k's
        input, an inference tensor: ``_ordinary`` makes it one autograd may save.

        Inference mode rather than ``no_grad``: no version counters or view tracking, for the
        same values (the saving is in docs/training.md)."""
        with torch.inference_mode():
            return self._run_prefix(input_ids, attention_mask)

    @staticmethod
    def _ordinary(hidden: torch.Tensor) -> torch.Tensor:
        """A copy the trainable blocks' backward may save (outside inference mode only; a
        conversion such as ``.to(bf16)`` makes one already)."""
        return hidden if torch.is_inference_mode_enabled() else hidden.clone()

    def _run_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The prefix forward itself, stopped at block k by a hook (dropout off)."""
        if self.k == 0:
            target, use_output = self.embeddings, True
        else:
            target, use_output = self.blocks[self.k - 1], True

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            raise _Captured(output[0] if isinstance(output, tuple) else output)

        prefix = [self.embeddings, *self.blocks[: self.k]]
        modes = [m.training for m in prefix]
        handle = target.register_forward_hook(hook) if use_output else None
        try:
            for m in prefix:
                m.eval()
            with swapped(
                self._blocks_parent, self._blocks_attr, nn.ModuleList(self.blocks[: self.k])
            ):
                try:
                    self.model(input_ids=input_ids, attention_mask=attention_mask)
                except _Captured as c:
                    return c.hidden.detach()
        finally:
            if handle is not None:
                handle.remove()
            for m, mode in zip(prefix, modes, strict=True):
                m.train(mode)
        raise RuntimeError("the frozen prefix never reached its last block")

    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        examples: list[int] | None,
        split: str,
    ) -> torch.Tensor:
        """Block k's input for a padded batch; cached rows are reused, the rest computed."""
        if self.cache is None or examples is None:
            return self._ordinary(self._compute(input_ids, attention_mask))
        table = self.cache.table((*self.cache_key, split, self.k))
        lengths = attention_mask.sum(1).tolist()
        if all(e in table for e in examples):
            self.cache.hits += len(examples)
            out = torch.zeros(
                (len(examples), input_ids.shape[1], self.dims.hidden),
                dtype=torch.float32 if self.store_dtype is not None else table[examples[0]].dtype,
                device=input_ids.device,
            )
            for row, e in enumerate(examples):
                out[row, : lengths[row]] = table[e].to(input_ids.device)
            return out
        self.cache.misses += len(examples)
        hidden = self._compute(input_ids, attention_mask)
        kept = hidden.to(self.store_dtype) if self.store_dtype is not None else hidden
        for row, e in enumerate(examples):
            if e not in table:
                self.cache.put(table, e, kept[row, : lengths[row]].to("cpu", copy=True))
        return kept.to(torch.float32) if self.store_dtype is not None else self._ordinary(hidden)

    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        examples: list[int] | None = None,
        split: str = "train",
    ) -> torch.Tensor:
        hidden = self.features(input_ids, attention_mask, examples, split)
        suffix = list(self.blocks[self.k :])
        suffix = nn.ModuleList(first_token_blocks(suffix) if self.first_token else suffix)
        with (
            swapped(self._emb_parent, self._emb_attr, _Feeder(hidden)),
            swapped(self._blocks_parent, self._blocks_attr, suffix),
        ):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
