"""Adapter layers that compute through ``paretune.kernels`` (PyTorch reference or Triton ops).

- ``route_through_kernels(model)``: peft LoRA ``Linear`` layers compute with
  ``paretune.kernels.lora_linear``; parameters, state-dict names and export are unchanged.
- ``BottleneckAdapter``: ``h + s * up(act(down(h)))`` through ``bottleneck_adapter``.
- ``PacaLinear``: partial-connection adaptation through ``paca_linear``.

The backend is chosen per call by ``PARETUNE_KERNELS`` (see ``paretune.kernels``).
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from paretune.kernels import bottleneck_adapter, lora_linear, paca_linear

__all__ = [
    "BottleneckAdapter",
    "PacaLinear",
    "RoutedLoraLinear",
    "route_through_kernels",
    "unroute_kernels",
]


def _routable(layer: nn.Module) -> bool:
    """A peft LoRA ``Linear`` the kernel can serve: plain ``nn.Linear`` base, no DoRA/variant."""
    if type(layer) not in (PeftLoraLinear, RoutedLoraLinear) or layer.fan_in_fan_out:
        return False
    if layer.lora_variant or any(layer.use_dora.values()):
        return False
    base = layer.get_base_layer()
    return isinstance(base, nn.Linear) and type(base).forward is nn.Linear.forward


def _kernel_adapter(
    layer: PeftLoraLinear, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """The adapter the kernel computes for this call, or None to use peft's own forward.

    Supported: one active vanilla LoRA adapter without LoRA bias, not merged, adapters enabled,
    no extra forward arguments (``adapter_names`` mixed batches fall back).
    """
    if args or kwargs or layer.disable_adapters or layer.merged or not _routable(layer):
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if not isinstance(lora_a, nn.Linear) or not isinstance(lora_b, nn.Linear):
        return None
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    if not isinstance(layer.lora_dropout[name], (nn.Dropout, nn.Identity)):
        return None
    return name


def _dropout_seed() -> int:
    """A fresh dropout seed from torch's default generator (so ``torch.manual_seed`` fixes it)."""
    return int(torch.randint(0, 2**62, (1,)).item())


class RoutedLoraLinear(PeftLoraLinear):
    """A peft LoRA ``Linear`` whose forward runs ``paretune.kernels.lora_linear`` when it can.

    Instances are made by ``route_through_kernels`` (a class swap, so pickling and deepcopy keep
    working and ``isinstance`` checks of peft still hold); never constructed directly.
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = _kernel_adapter(self, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        base = self.get_base_layer()
        dropout = self.lora_dropout[name]
        p = float(dropout.p) if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
        return lora_linear(
            x,
            base.weight,
            base.bias,
            self.lora_A[name].weight,
            self.lora_B[name].weight,
            float(self.scaling[name]),
            dropout_p=p,
            seed=_dropout_seed() if p > 0.0 else 0,
            training=p > 0.0,
        )


def route_through_kernels(model: nn.Module) -> int:
    """Make every peft LoRA ``Linear`` of ``model`` compute via ``paretune.kernels.lora_linear``.

    Returns how many layers were routed by this call (already routed ones are not counted).
    Layers with DoRA (or another LoRA variant), ``fan_in_fan_out`` or a base layer other than a
    plain ``nn.Linear`` are left alone. A routed layer falls back to peft's own forward for calls
    the kernel does not cover (several active adapters, merged or disabled adapters, LoRA bias,
    ``adapter_names``). No parameter or state-dict name changes.
    """
    routed = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear and _routable(module):
            module.__class__ = RoutedLoraLinear
            routed += 1
    return routed


def unroute_kernels(model: nn.Module) -> int:
    """Undo ``route_through_kernels``; returns how many layers went back to peft's forward."""
    restored = 0
    for module in model.modules():
        if type(module) is RoutedLoraLinear:
            module.__class__ = PeftLoraLinear
            restored += 1
    return restored


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
