"""IA3 through Hugging Face peft: one scaling vector per placed module."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.ia3 import FAMILY, Ia3Plan

from .base import Injector


def ia3_config(plan: Ia3Plan, dims: ModelDims, head_modules: list[str]) -> Any:
    """A peft IA3Config placing ``plan``: full module names, the feed-forward output marked as such."""
    from peft import IA3Config  # noqa: PLC0415

    modules = {dims.module_name(layer, target): target for layer, target in plan.modules}
    return IA3Config(
        target_modules=sorted(modules),
        feedforward_modules=sorted(
            name for name, t in modules.items() if FAMILY.feedforward(dims, t)
        ),
        fan_in_fan_out=any(dims.targets[t].kind == "conv1d" for t in modules.values()),
        modules_to_save=head_modules,
    )


class Ia3Injector(Injector):
    family: ClassVar[str] = "ia3"
    via_peft: ClassVar[bool] = True

    def apply(self, model: nn.Module, plan: Ia3Plan, dims: ModelDims, *, seed: int) -> nn.Module:
        from peft import get_peft_model  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # "modifying a model with PEFT a second time" when combined
            return get_peft_model(model, ia3_config(plan, dims, list(dims.head)))


INJECTOR = Ia3Injector()
