"""LN-tuning (Qi et al. 2022): train the weights and biases of chosen blocks' norms, nothing else.

Which norms train in a chosen layer: by default every norm of the block the architecture table
names (``norms_per_block``: BERT's ``attention.output.LayerNorm`` and ``output.LayerNorm``,
Llama's ``input_layernorm`` and ``post_attention_layernorm``, GPT-2's ``ln_1`` and ``ln_2``); a
list picks some by those paths. The embeddings' norm and a final norm stay frozen. Applied
through peft's ``LNTuningConfig`` (``paretune.trainers.injectors.ln_tuning``), so a plan of
ln_tuning alone exports in PEFT format.

Spec section (``space.ln_tuning``)::

    ln_tuning: {}                                  # ln_tuning.on.L3: the norms of layer 3 on/off
    ln_tuning: {norms: [output.LayerNorm]}         # only those norms (paths within the block)
    ln_tuning: {mode: shared, mask: shared}        # the study-wide layer mask layer.L3
    ln_tuning: {mode: all}                         # every layer, nothing searched

Parameters per chosen layer: each chosen norm's width, twice where the norms carry a bias
(LayerNorm: weight and bias; Llama's RMSNorm has a weight only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from ..architectures import ModelDims
from ..dims import Strict, unique_list
from .base import BIAS, PEFT_LAYER, Family, Problem, Refusal, layer_ranges
from .placement import Mask, SwitchMode, check_mode_mask, sample_switches, switch_dimensions
from .stored import Placement


class LnTuningSpace(Strict):
    """The LN-tuning section of a spec."""

    norms: list[str] | Literal["all"] = "all"
    mode: SwitchMode = "per-layer"
    mask: Mask = "own"

    @field_validator("norms")
    @classmethod
    def _norms(cls, v: list[str] | str) -> list[str] | str:
        return unique_list(v, "norms") if isinstance(v, list) else v

    @model_validator(mode="after")
    def _rest(self) -> LnTuningSpace:
        check_mode_mask(self.mode, self.mask)
        return self

    def resolve_norms(self, dims: ModelDims) -> list[str]:
        return list(dims.norms_per_block) if self.norms == "all" else list(self.norms)


@dataclass(frozen=True)
class LnTuningPlan:
    """Sampled LN-tuning: the layers whose ``norms`` (paths within the block) train."""

    layers: tuple[int, ...]
    norms: tuple[str, ...]


class LnTuningFamily(Family):
    name: ClassVar[str] = "ln_tuning"
    space_model = LnTuningSpace
    plan_type = LnTuningPlan

    def check(self, space: LnTuningSpace, dims: ModelDims, layers: list[int]) -> list[Problem]:
        available = list(dims.norms_per_block)
        if not available:
            return [
                ((), f"{dims.arch} names no norms in its blocks, so ln_tuning would train nothing")
            ]
        if space.norms == "all":
            return []
        return [
            (
                ("norms", i),
                f"{dims.arch} has no norm {n!r} in its blocks; norms here: {', '.join(available)}",
            )
            for i, n in enumerate(space.norms)
            if n not in available
        ]

    def dimensions(
        self, space: LnTuningSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        return switch_dimensions(self.name, space.mode, space.mask, layers)

    def sample(
        self, trial: Any, space: LnTuningSpace, dims: ModelDims, layers: list[int]
    ) -> LnTuningPlan | None:
        chosen = sample_switches(trial, self.name, space.mode, space.mask, layers)
        norms = space.resolve_norms(dims)
        return LnTuningPlan(tuple(chosen), tuple(norms)) if chosen and norms else None

    def layer_params(self, dims: ModelDims, norms: tuple[str, ...] | list[str]) -> int:
        per_width = 2 if dims.norm_bias else 1
        return per_width * sum(dims.norms_per_block[n] for n in norms)

    def count(self, plan: LnTuningPlan, dims: ModelDims) -> int:
        return len(plan.layers) * self.layer_params(dims, plan.norms)

    def bounds(self, space: LnTuningSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        high = len(layers) * self.layer_params(dims, space.resolve_norms(dims))
        return (high if space.mode == "all" else 0), high

    def layers(self, plan: LnTuningPlan, dims: ModelDims) -> set[int]:
        return set(plan.layers)

    def uses(self, space: LnTuningSpace, dims: ModelDims) -> dict[str, list[str]]:
        norms = space.resolve_norms(dims)
        return {PEFT_LAYER: norms, BIAS: norms if dims.norm_bias else []}

    def refusals(self, space: LnTuningSpace, dims: ModelDims) -> list[Refusal]:
        norms = tuple(space.resolve_norms(dims))
        return [
            Refusal(
                BIAS,
                norms,
                "ln_tuning trains a copy of each chosen norm, bias included (peft's LNTuningLayer), "
                "and the original, whose bias bitfit would unfreeze, no longer computes anything, so "
                "that bias would never train; remove norms from bitfit.biases (ln_tuning trains "
                "those biases already)",
                noun="norm",
            ),
            Refusal(
                PEFT_LAYER,
                norms,
                "both are peft tuners, and paretune stacks peft tuners on different modules only "
                "(peft's layers are not made to wrap each other); give them disjoint norms",
                noun="norm",
            ),
        ]

    def plan_to_dict(self, plan: LnTuningPlan) -> dict[str, Any]:
        return {"layers": list(plan.layers), "norms": list(plan.norms)}

    def plan_from_dict(self, data: dict[str, Any]) -> LnTuningPlan:
        return LnTuningPlan(
            layers=tuple(int(x) for x in data["layers"]),
            norms=tuple(str(n) for n in data["norms"]),
        )

    def placed(self, plan: LnTuningPlan) -> list[Placement]:
        return [(layer, self.name, 1.0) for layer in plan.layers]

    def summary(self, plan: LnTuningPlan) -> str:
        return f"ln_tuning on {layer_ranges(list(plan.layers))} ({','.join(plan.norms)})"


FAMILY = LnTuningFamily()
