"""Serial adapters: a bottleneck adapter on the output of each chosen block's FFN output projection.

The adapter is a child of its block (``<block>.serial_adapter``, so its parameters are named and
saved with the model) and runs from a forward hook on the projection named by
``ffn_output_target``: BERT's ``output.dense`` before dropout, residual and LayerNorm; Llama's
``down_proj`` and GPT-2's ``mlp.c_proj``, the MLP's output. Module names of the base stay as they
are, and peft layers on that projection run first (the hook sees their output).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.serial_adapter import SerialAdapterPlan

from .base import Injector
from .bottleneck import BottleneckAdapter
from .placement import hf_model

ATTRIBUTE = "serial_adapter"


class SerialAdapter(BottleneckAdapter):
    """A bottleneck adapter that replaces a module's output by ``adapter(output)``."""

    def hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return self(output)


class SerialAdapterInjector(Injector):
    family: ClassVar[str] = "serial_adapter"

    def apply(
        self, model: nn.Module, plan: SerialAdapterPlan, dims: ModelDims, *, seed: int
    ) -> nn.Module:
        root = hf_model(model)
        for layer, size in plan.sizes:
            adapter = SerialAdapter(dims.hidden, size, plan.activation, plan.scaling)
            root.get_submodule(dims.block(layer)).add_module(ATTRIBUTE, adapter)
            root.get_submodule(
                dims.module_name(layer, dims.ffn_output_target)
            ).register_forward_hook(adapter.hook)
        return model


INJECTOR = SerialAdapterInjector()
