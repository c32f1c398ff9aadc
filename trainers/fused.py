"""peft's LoRA layers routed through ``paretune.kernels`` (PyTorch reference or Triton ops).

``route_through_kernels(model)``: peft LoRA ``Linear`` layers compute with
``paretune.kernels.lora_linear``; parameters, state-dict names and export are unchanged. The
LoRA injector asks for it (``Injector.route_kernels``); paretune's own modules (the bottleneck
adapters, ``PacaLinear``) call the kernels themselves, in their families' injector modules.

The backend is chosen per call by ``PARETUNE_KERNELS`` (see ``paretune.kernels``).
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from paretune.kernels import lora_linear

__all__ = ["RoutedLoraLinear", "route_through_kernels", "unroute_kernels"]


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
