"""Parallel adapters: beside each chosen block's feed-forward network.

The adapter (``<block>.parallel_adapter``) takes the FFN's input from a forward pre-hook on
``ffn_input_target`` (BERT's ``intermediate.dense``, Llama's ``up_proj``, GPT-2's ``mlp.c_fc``)
and adds ``scaling * up(act(down(x)))`` to the output of ``ffn_output_target`` from a forward hook,
before the residual. The fused op computes ``x + scaling * up(act(down(x)))``; subtracting ``x``
leaves the change alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.parallel_adapter import ParallelAdapterPlan

from .base import Injector
from .bottleneck import BottleneckAdapter
from .placement import hf_model

ATTRIBUTE = "parallel_adapter"


class ParallelAdapter(BottleneckAdapter):
    """A bottleneck adapter reading one module's input and adding to another module's output."""

    def __init__(
        self, hidden: int, bottleneck: int, activation: str = "relu", scaling: float = 1.0
    ) -> None:
        super().__init__(hidden, bottleneck, activation, scaling)
        self._ffn_input: torch.Tensor | None = None

    def capture(self, module: nn.Module, args: Any) -> None:
        self._ffn_input = args[0]

    def add(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        x, self._ffn_input = self._ffn_input, None
        if x is None:
            raise RuntimeError(
                "parallel adapter: the feed-forward input was not seen before its output"
            )
        return output + (self(x) - x)


class ParallelAdapterInjector(Injector):
    family: ClassVar[str] = "parallel_adapter"

    def apply(
        self, model: nn.Module, plan: ParallelAdapterPlan, dims: ModelDims, *, seed: int
    ) -> nn.Module:
        root = hf_model(model)
        for layer, size in plan.sizes:
            adapter = ParallelAdapter(dims.hidden, size, plan.activation, plan.scaling)
            root.get_submodule(dims.block(layer)).add_module(ATTRIBUTE, adapter)
            root.get_submodule(
                dims.module_name(layer, dims.ffn_input_target)
            ).register_forward_pre_hook(adapter.capture)
            root.get_submodule(
                dims.module_name(layer, dims.ffn_output_target)
            ).register_forward_hook(adapter.add)
        return model


INJECTOR = ParallelAdapterInjector()
