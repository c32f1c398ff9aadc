"""The bottleneck adapter module the serial and parallel adapter families share.

``h + scaling * up(act(down(h)))``, computed by ``paretune.kernels.bottleneck_adapter`` (the
PyTorch reference or the fused Triton op, chosen per call by the tensors' device).
"""

from __future__ import annotations

import torch
from torch import nn

from paretune.kernels import bottleneck_adapter


class BottleneckAdapter(nn.Module):
    """``h + scaling * up(act(down(h)))``; ``up`` starts at zero: the adapter starts as identity."""

    def __init__(
        self, hidden: int, bottleneck: int, activation: str = "relu", scaling: float = 1.0
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = activation
        self.scaling = float(scaling)
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return bottleneck_adapter(
            h,
            self.down.weight,
            self.down.bias,
            self.up.weight,
            self.up.bias,
            activation=self.activation,
            scaling=self.scaling,
        )

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, scaling={self.scaling}"
