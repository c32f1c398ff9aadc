"""PaCA: each placed projection becomes a ``PacaLinear`` training k random input columns.

The columns are drawn from the trial's seed, the layer and the target (not from the global
random stream), so the same configuration picks the same columns in every process.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.paca import PacaPlan
from paretune.trainers.fused import PacaLinear

from .base import Injector
from .placement import hf_model, projection_slot, replace_module


def column_generator(seed: int, layer: int, target: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"paca:{seed}:{layer}:{target}".encode()))


def paca_layer(module: nn.Module, kind: str, k: int, generator: torch.Generator) -> PacaLinear:
    """A PacaLinear computing what ``module`` computes, with ``k`` of its input columns trained."""
    if kind == "conv1d":  # GPT-2's Conv1D stores the weight as [in, out]
        weight = module.weight.detach().t().contiguous()
    else:
        weight = module.weight
    idx = torch.randperm(weight.shape[1], generator=generator)[:k].sort().values
    return PacaLinear(weight, module.bias, idx)


class PacaInjector(Injector):
    family: ClassVar[str] = "paca"

    def apply(self, model: nn.Module, plan: PacaPlan, dims: ModelDims, *, seed: int) -> nn.Module:
        root = hf_model(model)
        for layer, target, k in plan.columns:
            parent, attr = projection_slot(root, dims.module_name(layer, target))
            new = paca_layer(
                getattr(parent, attr),
                dims.targets[target].kind,
                k,
                column_generator(seed, layer, target),
            )
            replace_module(parent, attr, new)
        return model


INJECTOR = PacaInjector()
