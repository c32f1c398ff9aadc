"""IA3: learned scaling vectors, on or off per layer and target (through Hugging Face peft).

IA3 multiplies a module's activations by a trained vector that starts at ones. On the feed-forward
output projection (``ffn_output_target`` of the architecture table: BERT's ``output.dense``,
Llama's ``down_proj``, GPT-2's ``mlp.c_proj``) it scales the module's *input*, the feed-forward
block's hidden activations, as the IA3 paper does; on every other target it scales the output.

Spec section (``space.ia3``)::

    ia3: {targets: [key, value, output]}            # ia3.on.L3.key: true/false per layer and target
    ia3: {mode: shared}                             # ia3.layer.L3: every target of the chosen layers
    ia3: {mode: shared, mask: shared}               # layer.L3, the study-wide (AutoPEFT) mask
    ia3: {mode: all}                                # every layer and target, nothing searched

Without ``targets``: key and value (GPT-2: the fused qkv) and the feed-forward output, IA3's
placement. Parameters per module: ``in_features`` on the feed-forward output, else ``out_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import field_validator, model_validator

from ..architectures import ModelDims
from ..dims import Strict, suggest, unique_list
from .base import PEFT_LAYER, Family, Problem, Refusal, layer_ranges
from .placement import (
    MASK_CHOICES,
    Mask,
    SwitchMode,
    check_mode_mask,
    mask_dimensions,
    sample_mask,
    unknown_targets,
)
from .stored import Placement


def default_targets(dims: ModelDims) -> list[str]:
    """IA3's own placement: keys, values and the feed-forward output."""
    attention = [t for t in ("key", "value") if t in dims.targets] or [
        t for t in ("qkv",) if t in dims.targets
    ]
    return attention + [dims.ffn_output_target]


class Ia3Space(Strict):
    """The IA3 section of a spec."""

    targets: list[str] | None = None
    mode: SwitchMode = "per-layer"
    mask: Mask = "own"

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else unique_list(v, "targets")

    @model_validator(mode="after")
    def _rest(self) -> Ia3Space:
        check_mode_mask(self.mode, self.mask)
        return self

    def resolve_targets(self, dims: ModelDims) -> list[str]:
        return (
            dims.resolve_targets(self.targets)
            if self.targets is not None
            else default_targets(dims)
        )


@dataclass(frozen=True)
class Ia3Plan:
    """Sampled IA3: (layer, target) of every scaled module."""

    modules: tuple[tuple[int, str], ...]


class Ia3Family(Family):
    name: ClassVar[str] = "ia3"
    space_model = Ia3Space
    plan_type = Ia3Plan

    def check(self, space: Ia3Space, dims: ModelDims, layers: list[int]) -> list[Problem]:
        return [
            (("targets", i), msg) for i, msg in unknown_targets(space.resolve_targets(dims), dims)
        ]

    def dimensions(
        self, space: Ia3Space, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        if space.mode == "all":
            return []
        if space.mode == "shared":
            return mask_dimensions(self.name, space.mask, layers)
        return [
            (f"ia3.on.L{layer}.{t}", 2) for layer in layers for t in space.resolve_targets(dims)
        ]

    def sample(
        self, trial: Any, space: Ia3Space, dims: ModelDims, layers: list[int]
    ) -> Ia3Plan | None:
        targets = space.resolve_targets(dims)
        if space.mode == "all":
            modules = [(layer, t) for layer in layers for t in targets]
        elif space.mode == "shared":
            modules = [
                (layer, t)
                for layer in sample_mask(trial, self.name, space.mask, layers)
                for t in targets
            ]
        else:
            modules = [
                (layer, t)
                for layer in layers
                for t in targets
                if suggest(trial, f"ia3.on.L{layer}.{t}", MASK_CHOICES)
            ]
        return Ia3Plan(tuple(modules)) if modules else None

    @staticmethod
    def feedforward(dims: ModelDims, target: str) -> bool:
        """Whether IA3 scales this target's input (the feed-forward output) rather than its output."""
        return target == dims.ffn_output_target

    def module_params(self, dims: ModelDims, target: str) -> int:
        shape = dims.targets[target]
        return shape.in_features if self.feedforward(dims, target) else shape.out_features

    def count(self, plan: Ia3Plan, dims: ModelDims) -> int:
        return sum(self.module_params(dims, t) for _, t in plan.modules)

    def bounds(self, space: Ia3Space, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        high = len(layers) * sum(self.module_params(dims, t) for t in space.resolve_targets(dims))
        return (high if space.mode == "all" else 0), high

    def layers(self, plan: Ia3Plan, dims: ModelDims) -> set[int]:
        return {layer for layer, _ in plan.modules}

    def uses(self, space: Ia3Space, dims: ModelDims) -> dict[str, list[str]]:
        return {PEFT_LAYER: space.resolve_targets(dims)}

    def refusals(self, space: Ia3Space, dims: ModelDims) -> list[Refusal]:
        return [
            Refusal(
                PEFT_LAYER,
                tuple(space.resolve_targets(dims)),
                "both are peft tuners, and paretune stacks peft tuners on different modules only "
                "(peft's layers are not made to wrap each other); give them disjoint targets",
            )
        ]

    def placed(self, plan: Ia3Plan) -> list[Placement]:
        return [(layer, t, 1.0) for layer, t in plan.modules]

    def plan_to_dict(self, plan: Ia3Plan) -> dict[str, Any]:
        return {"modules": [list(x) for x in plan.modules]}

    def plan_from_dict(self, data: dict[str, Any]) -> Ia3Plan:
        return Ia3Plan(modules=tuple((int(a), str(b)) for a, b in data["modules"]))

    def summary(self, plan: Ia3Plan) -> str:
        by_layer: dict[int, list[str]] = {}
        for layer, t in plan.modules:
            by_layer.setdefault(layer, []).append(t)
        groups: dict[tuple[str, ...], list[int]] = {}
        for layer, targets in by_layer.items():
            groups.setdefault(tuple(targets), []).append(layer)
        parts = [
            f"{layer_ranges(ls)} {','.join(ts)}"
            for ts, ls in sorted(groups.items(), key=lambda kv: min(kv[1]))
        ]
        return "ia3 on " + " + ".join(parts)


FAMILY = Ia3Family()
