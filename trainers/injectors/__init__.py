"""Applying a ``PeftPlan`` to a model. One injector per family; one registry line each."""

from __future__ import annotations

import torch
from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.plan import PeftPlan

from .base import Injector
from .bitfit import INJECTOR as BITFIT
from .ia3 import INJECTOR as IA3
from .ln_tuning import INJECTOR as LN_TUNING
from .lora import INJECTOR as LORA
from .paca import INJECTOR as PACA
from .parallel_adapter import INJECTOR as PARALLEL_ADAPTER
from .prefix import INJECTOR as PREFIX
from .serial_adapter import INJECTOR as SERIAL_ADAPTER

INJECTORS: dict[str, Injector] = {
    i.family: i
    for i in (LORA, IA3, PREFIX, SERIAL_ADAPTER, PARALLEL_ADAPTER, BITFIT, PACA, LN_TUNING)
}


PEFT_ROOT = "base_model.model."


def freeze_base(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze_head(model: nn.Module, dims: ModelDims) -> None:
    """The classification head always trains; under peft, only its trainable copy does.

    ``dims.head`` names top-level modules of the task model (``classifier``, ``score``,
    DeBERTa's ``pooler``); under peft they sit below ``base_model.model``."""
    for name, module in model.named_modules():
        if name.removeprefix(PEFT_ROOT) not in dims.head:
            continue
        copy = getattr(module, "modules_to_save", None)  # peft's ModulesToSaveWrapper
        for p in (copy if copy is not None else module).parameters():
            p.requires_grad_(True)


def apply_plan(model: nn.Module, plan: PeftPlan, dims: ModelDims, *, seed: int = 0) -> nn.Module:
    """Freeze the base model, place every family of ``plan``, and leave the head trainable.

    peft-backed families go first (peft wraps the model); paretune's own modules follow.
    """
    freeze_base(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ordered = sorted(plan.parts, key=lambda kv: not INJECTORS[kv[0]].via_peft)
        for name, part in ordered:
            model = INJECTORS[name].apply(model, part, dims, seed=seed)
    unfreeze_head(model, dims)
    return model


def route_kernels(model: nn.Module, plan: PeftPlan) -> int:
    """Route the plan's layers through the fused kernels (on CUDA), unless a family of the plan
    trains something a kernel would skip (``Injector.allows_kernel_routing``); returns how many
    layers were routed."""
    injectors = [INJECTORS[name] for name in plan.families]
    if not all(i.allows_kernel_routing for i in injectors):
        return 0
    return sum(i.route_kernels(model) for i in injectors)


def extra_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What every family declares an export must keep besides the trainable parameters."""
    out: dict[str, torch.Tensor] = {}
    for injector in INJECTORS.values():
        out.update(injector.extra_tensors(model))
    return out


def count_requires_grad(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "INJECTORS",
    "Injector",
    "apply_plan",
    "count_requires_grad",
    "extra_tensors",
    "route_kernels",
]
