"""How a family's plan is put into a model: the trainer-side half of a PEFT family."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims


class Injector(ABC):
    """Puts one family's adapters into a model whose base weights are already frozen."""

    family: ClassVar[str]
    #: applied through Hugging Face peft (exportable in PEFT format)
    via_peft: ClassVar[bool] = False
    #: whether, with this family in the plan, other families' layers may compute through the
    #: fused kernels on CUDA (:meth:`route_kernels`); False where a kernel would skip what this
    #: family trains
    allows_kernel_routing: ClassVar[bool] = True

    @abstractmethod
    def apply(self, model: nn.Module, plan: Any, dims: ModelDims, *, seed: int) -> nn.Module:
        """Return the adapted model (possibly a new wrapper object)."""

    def route_kernels(self, model: nn.Module) -> int:
        """Swap this family's layers of ``model`` for ones computing through the fused kernels;
        returns how many. None by default: paretune's own modules call ``paretune.kernels``
        themselves, and the op picks Triton by the tensors' device."""
        return 0

    def extra_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Tensors besides the trainable parameters that an export keeps for this family's
        modules of ``model`` (by state-dict name): none by default."""
        return {}


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)
