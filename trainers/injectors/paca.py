"""PaCA: each placed projection becomes a ``PacaLinear`` training k random input columns.

The columns are drawn from the trial's seed, the layer and the target (not from the global
random stream), so the same configuration picks the same columns in every process. The layer
computes through ``paretune.kernels.paca_linear`` (the fused Triton op on CUDA tensors).
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import torch
from torch import nn

from paretune.kernels import paca_linear
from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.paca import PacaPlan

from .base import Injector
from .placement import hf_model, projection_slot, replace_module


class PacaLinear(nn.Module):
    """Partial-connection adaptation of a linear layer: only the columns ``idx`` are trained.

    ``weight`` (and ``bias``) stay frozen; ``partial`` ([out, k], initialised to the chosen
    columns) is the trainable parameter; ``idx`` is a persistent buffer so the choice is saved.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, idx: torch.Tensor) -> None:
        super().__init__()
        if idx.dim() != 1 or idx.numel() == 0 or idx.unique().numel() != idx.numel():
            raise ValueError("idx must be a non-empty 1-D tensor of distinct column indices")
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight)
        self.weight.requires_grad_(False)
        if bias is not None:
            self.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias)
            self.bias.requires_grad_(False)
        else:
            self.register_parameter("bias", None)
        idx = idx.to(device=weight.device, dtype=torch.long)
        self.register_buffer("idx", idx)
        self.partial = nn.Parameter(weight.detach()[:, idx].clone())

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, k: int, generator: torch.Generator | None = None
    ) -> PacaLinear:
        """Wrap ``linear`` (its weight is kept, not copied) training ``k`` random input columns."""
        n_in = linear.in_features
        if not 0 < k <= n_in:
            raise ValueError(f"k must be in [1, {n_in}], got {k}")
        device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(n_in, generator=generator, device=device)[:k].sort().values
        return cls(linear.weight, linear.bias, idx)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return paca_linear(x, self.weight, self.bias, self.idx, self.partial)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """The full weight with the trained columns written in (a new tensor)."""
        return self.weight.index_copy(1, self.idx, self.partial.to(self.weight.dtype))

    def extra_repr(self) -> str:
        k = self.idx.numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, k={k}"


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

    def extra_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Each PaCA layer's column indices (``<module>.idx``): the export keeps the choice."""
        return {
            f"{name}.idx": module.idx
            for name, module in model.named_modules()
            if isinstance(module, PacaLinear)
        }


INJECTOR = PacaInjector()
