"""LoRA and DoRA through Hugging Face peft, with a rank (and alpha) per module."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.lora import MUTATING_INITS, LoraPlan

from .base import Injector


def lora_config(plan: LoraPlan, dims: ModelDims, head_modules: list[str]) -> Any:
    """A peft LoraConfig placing ``plan``: full module names, per-module rank_pattern/alpha_pattern."""
    from peft import LoraConfig  # noqa: PLC0415

    modules = {dims.module_name(layer, target): r for layer, target, r in plan.ranks}
    common = Counter(modules.values()).most_common(1)[0][0]
    fan_in_fan_out = any(dims.targets[t].kind == "conv1d" for _, t, _ in plan.ranks)
    # peft warns that its own PiSSA/OLoRA conversion cannot take rsLoRA with per-module ranks;
    # export converts them itself (paretune.trainers.lora_conversion)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*path_initial_model_for_weight_conversion")
        return LoraConfig(
            r=common,
            lora_alpha=plan.alpha_for(common),
            target_modules=sorted(modules),
            rank_pattern={name: r for name, r in modules.items() if r != common},
            alpha_pattern={name: plan.alpha_for(r) for name, r in modules.items() if r != common},
            lora_dropout=plan.dropout,
            use_dora=plan.dora,
            use_rslora=plan.rslora,
            init_lora_weights=True if plan.init == "default" else plan.init,
            fan_in_fan_out=fan_in_fan_out,
            modules_to_save=head_modules,
            bias="none",
        )


INITIAL_ADAPTER = "paretune_initial_adapter"
"""The attribute of a PeftModel holding its LoRA tensors as initialised, for an init that changes
the base weights (pissa, olora): a PEFT export converts the trained adapter against them."""


class LoraInjector(Injector):
    family: ClassVar[str] = "lora"
    via_peft: ClassVar[bool] = True

    def apply(self, model: nn.Module, plan: LoraPlan, dims: ModelDims, *, seed: int) -> nn.Module:
        from peft import get_peft_model, get_peft_model_state_dict  # noqa: PLC0415

        peft_model = get_peft_model(model, lora_config(plan, dims, list(dims.head)))
        if plan.init in MUTATING_INITS:
            initial = get_peft_model_state_dict(peft_model)
            setattr(
                peft_model,
                INITIAL_ADAPTER,
                {k: v.detach().clone() for k, v in initial.items() if ".lora_" in k},
            )
        return peft_model

    def route_kernels(self, model: nn.Module) -> int:
        """peft's LoRA ``Linear`` layers compute through ``paretune.kernels.lora_linear``."""
        from paretune.trainers.fused import route_through_kernels  # noqa: PLC0415 - imports peft

        return route_through_kernels(model)


INJECTOR = LoraInjector()
