"""Prefix tuning through Hugging Face peft (``PrefixTuningConfig``, sequence classification).

peft's prefix tuning needs its own ``PeftModelForSequenceClassification`` around the transformers
model. When LoRA or IA3 came first, their layers already sit inside the transformers model, so
the prefix wrapper goes around that model (their ``PeftModel`` wrapper is dropped; their layers
and trainable parameters stay). Such a combined plan exports in paretune's format.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from torch import nn

from paretune.spaces.architectures import ModelDims
from paretune.spaces.families.prefix import PrefixPlan

from .base import Injector
from .placement import hf_model, keep_trainable


def prefix_config(plan: PrefixPlan, dims: ModelDims) -> Any:
    """Keys and values for every layer; with grouped-query attention, for the key-value heads."""
    from peft import PrefixTuningConfig, TaskType  # noqa: PLC0415

    return PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=plan.length,
        num_layers=dims.n_layers,
        token_dim=dims.n_kv_heads * dims.head_dim,
        num_attention_heads=dims.n_kv_heads,
    )


class PrefixInjector(Injector):
    family: ClassVar[str] = "prefix"
    via_peft: ClassVar[bool] = True

    def apply(self, model: nn.Module, plan: PrefixPlan, dims: ModelDims, *, seed: int) -> nn.Module:
        from peft import get_peft_model  # noqa: PLC0415

        base = hf_model(model)
        with keep_trainable(base), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_peft_model(base, prefix_config(plan, dims))


INJECTOR = PrefixInjector()
