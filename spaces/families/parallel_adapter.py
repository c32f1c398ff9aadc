"""Parallel bottleneck adapters: beside the feed-forward block (He et al., 2022).

One adapter per chosen layer reads the feed-forward block's input (the input of
``ffn_input_target``) and adds ``scaling * up(act(down(x)))`` to the block's output (the output of
``ffn_output_target``), before the residual. ``up`` starts at zero, so a fresh adapter changes
nothing. With a serial adapter in the same layer, the serial adapter sees the sum.

Spec section (``space.parallel_adapter``)::

    parallel_adapter: {sizes: [0, 16, 32], scaling: [1.0, 4.0]}          # parallel_adapter.size.L3
    parallel_adapter: {sizes: {ladder: 5}, mode: shared, mask: shared}   # parallel_adapter.size + layer.L3

Parameters per adapted layer: ``2 * hidden * b + b + hidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .bottleneck import BottleneckFamily, BottleneckPlan, BottleneckSpace


class ParallelAdapterSpace(BottleneckSpace):
    """The parallel adapter section of a spec."""


@dataclass(frozen=True)
class ParallelAdapterPlan(BottleneckPlan):
    """Sampled parallel adapters: (layer, bottleneck size) pairs and the scaling."""


class ParallelAdapterFamily(BottleneckFamily):
    name: ClassVar[str] = "parallel_adapter"
    space_model = ParallelAdapterSpace
    plan_type = ParallelAdapterPlan


FAMILY = ParallelAdapterFamily()
