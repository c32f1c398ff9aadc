"""BitFit: unfreeze the chosen biases of the chosen blocks (nothing is added to the model)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.errors import ModelError
from paretune.spaces.families.bitfit import NORMS, BitfitPlan, norm_parameter

from .base import Injector
from .placement import hf_model, projection


def bias_modules(root: nn.Module, dims: ModelDims, layer: int, bias: str) -> list[nn.Module]:
    """The modules whose bias a BitFit bias group names (under peft wrappers: the projection itself)."""
    if bias == NORMS:
        block = root.get_submodule(dims.block(layer))
        return [block.get_submodule(path) for path in dims.norms_per_block]
    return [projection(root, dims.module_name(layer, bias))]


class BitfitInjector(Injector):
    family: ClassVar[str] = "bitfit"
    # the fused LoRA kernel (paretune.kernels.lora_linear) gives the base layer's bias no
    # gradient, so a projection bias bitfit unfreezes under a LoRA layer would not train
    allows_kernel_routing: ClassVar[bool] = False

    def apply(self, model: nn.Module, plan: BitfitPlan, dims: ModelDims, *, seed: int) -> nn.Module:
        root = hf_model(model)
        for layer in plan.layers:
            for bias in plan.biases:
                attr = norm_parameter(dims) if bias == NORMS else "bias"
                for module in bias_modules(root, dims, layer, bias):
                    if getattr(module, attr, None) is None:
                        raise ModelError(
                            f"bitfit: {dims.block(layer)} has no {bias!r} {attr} to train"
                        )
                    getattr(module, attr).requires_grad_(True)
        return model


INJECTOR = BitfitInjector()
