"""LN-tuning through Hugging Face peft (``LNTuningConfig``): a trained copy of each chosen norm.

peft replaces each chosen norm by an ``LNTuningLayer`` that keeps the original (frozen) as its
base layer and trains a copy of it, weight and bias; so the count is the norms' own sizes and a
plan of ln_tuning alone exports in PEFT format.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.ln_tuning import LnTuningPlan

from .base import Injector


def ln_tuning_config(plan: LnTuningPlan, dims: ModelDims, head_modules: list[str]) -> Any:
    """A peft LNTuningConfig naming every chosen norm by its full module name."""
    from peft import LNTuningConfig  # noqa: PLC0415

    modules = [f"{dims.block(layer)}.{norm}" for layer in plan.layers for norm in plan.norms]
    return LNTuningConfig(target_modules=sorted(modules), modules_to_save=head_modules)


class LnTuningInjector(Injector):
    family: ClassVar[str] = "ln_tuning"
    via_peft: ClassVar[bool] = True

    def apply(
        self, model: nn.Module, plan: LnTuningPlan, dims: ModelDims, *, seed: int
    ) -> nn.Module:
        from peft import get_peft_model  # noqa: PLC0415

        with warnings.catch_warnings():
            # "unsupported layer type" (a norm has no in/out features), and "modifying a model
            # with PEFT a second time" when combined
            warnings.simplefilter("ignore")
            return get_peft_model(model, ln_tuning_config(plan, dims, list(dims.head)))


INJECTOR = LnTuningInjector()
