"""Serial bottleneck adapters in the Pfeiffer position: after the feed-forward block.

One adapter per chosen layer transforms the output of the block's feed-forward output projection
(``ffn_output_target`` in the architecture table): for BERT the output of ``output.dense``, before
the dropout, the residual and the LayerNorm; for Llama and GPT-2 the MLP's output projection,
before the residual. The adapter carries its own skip connection (``h + up(act(down(h)))``, ``up``
initialised to zero), so a fresh adapter is the identity.

Spec section (``space.serial_adapter``)::

    serial_adapter: {sizes: [0, 16, 32], mode: per-layer}              # serial_adapter.size.L3
    serial_adapter: {sizes: {ladder: 5}, mode: shared, mask: shared}   # serial_adapter.size + layer.L3

Parameters per adapted layer: ``2 * hidden * b + b + hidden``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .bottleneck import BottleneckFamily, BottleneckPlan, BottleneckSpace


class SerialAdapterSpace(BottleneckSpace):
    """The serial adapter section of a spec."""


@dataclass(frozen=True)
class SerialAdapterPlan(BottleneckPlan):
    """Sampled serial adapters: (layer, bottleneck size) pairs."""


class SerialAdapterFamily(BottleneckFamily):
    name: ClassVar[str] = "serial_adapter"
    space_model = SerialAdapterSpace
    plan_type = SerialAdapterPlan


FAMILY = SerialAdapterFamily()
