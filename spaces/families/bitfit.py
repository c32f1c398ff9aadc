"""BitFit: train the bias terms of chosen layers, nothing else of the block.

Which biases train in a chosen layer: by default every bias the block has, read from the
architecture table: the bias of each projection marked ``bias`` (BERT: query, key, value,
attention output, intermediate, output; GPT-2: qkv, attention output, intermediate, output;
Llama only with ``attention_bias`` / ``mlp_bias``, Qwen2's query, key and value) and, where the
norms carry one (BERT, GPT-2; not Llama's RMSNorm), the biases of the block's norms (``norms``).
On a block with no bias at all (Llama, Mistral, Gemma, Phi-3) ``norms`` trains the norms'
weights, the only per-channel terms such a block has. Embedding and pooler biases stay frozen.
A block with neither biases nor norms is rejected: bitfit would train nothing.

Spec section (``space.bitfit``)::

    bitfit: {}                                  # bitfit.on.L3: all biases of layer 3 on/off
    bitfit: {biases: [query, value, norms]}     # only those biases
    bitfit: {mode: shared, mask: shared}        # the study-wide layer mask layer.L3
    bitfit: {mode: all}                         # every layer, nothing searched

Parameters per chosen layer: the sum of the chosen biases' sizes (a projection's
``out_features``; each norm's width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from ..architectures import ModelDims
from ..dims import Strict, unique_list
from .base import BIAS, Family, Problem, layer_ranges
from .placement import Mask, SwitchMode, check_mode_mask, sample_switches, switch_dimensions
from .stored import Placement

NORMS = "norms"


def available_biases(dims: ModelDims) -> list[str]:
    """The bias groups a block of this architecture has: projections with a bias, then norms
    (their biases; on a block with no bias at all, such as Llama's, their weights)."""
    found = [t for t, shape in dims.targets.items() if shape.bias]
    if dims.norms_per_block and (dims.norm_bias or not found):
        found.append(NORMS)
    return found


def norm_parameter(dims: ModelDims) -> str:
    """What ``norms`` trains: the norms' ``bias``, or their ``weight`` where norms have none."""
    return "bias" if dims.norm_bias else "weight"


class BitfitSpace(Strict):
    """The BitFit section of a spec."""

    biases: list[str] | Literal["all"] = "all"
    mode: SwitchMode = "per-layer"
    mask: Mask = "own"

    @field_validator("biases")
    @classmethod
    def _biases(cls, v: list[str] | str) -> list[str] | str:
        return unique_list(v, "biases") if isinstance(v, list) else v

    @model_validator(mode="after")
    def _rest(self) -> BitfitSpace:
        check_mode_mask(self.mode, self.mask)
        return self

    def resolve_biases(self, dims: ModelDims) -> list[str]:
        return available_biases(dims) if self.biases == "all" else dims.resolve_targets(self.biases)


@dataclass(frozen=True)
class BitfitPlan:
    """Sampled BitFit: the layers whose ``biases`` (target names and ``norms``) train."""

    layers: tuple[int, ...]
    biases: tuple[str, ...]


class BitfitFamily(Family):
    name: ClassVar[str] = "bitfit"
    space_model = BitfitSpace
    plan_type = BitfitPlan

    def check(self, space: BitfitSpace, dims: ModelDims, layers: list[int]) -> list[Problem]:
        available = available_biases(dims)
        if not available:
            return [
                (
                    (),
                    f"{dims.arch} ({dims.model_type}) blocks have no bias terms (no projection bias, "
                    "norms without bias), so bitfit would train nothing; drop bitfit for this model (under a preset: bitfit: false)",
                )
            ]
        if space.biases == "all":
            return []
        return [
            (
                ("biases", i),
                f"{dims.arch} has no {b!r} bias in its blocks; biases here: {', '.join(available)}",
            )
            for i, b in enumerate(dims.resolve_targets(space.biases))
            if b not in available
        ]

    def dimensions(
        self, space: BitfitSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        return switch_dimensions(self.name, space.mode, space.mask, layers)

    def sample(
        self, trial: Any, space: BitfitSpace, dims: ModelDims, layers: list[int]
    ) -> BitfitPlan | None:
        chosen = sample_switches(trial, self.name, space.mode, space.mask, layers)
        biases = space.resolve_biases(dims)
        return BitfitPlan(tuple(chosen), tuple(biases)) if chosen and biases else None

    def layer_params(self, dims: ModelDims, biases: tuple[str, ...] | list[str]) -> int:
        total = 0
        for b in biases:
            total += (
                sum(dims.norms_per_block.values()) if b == NORMS else dims.targets[b].out_features
            )
        return total

    def count(self, plan: BitfitPlan, dims: ModelDims) -> int:
        return len(plan.layers) * self.layer_params(dims, plan.biases)

    def bounds(self, space: BitfitSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        high = len(layers) * self.layer_params(dims, space.resolve_biases(dims))
        return (high if space.mode == "all" else 0), high

    def layers(self, plan: BitfitPlan, dims: ModelDims) -> set[int]:
        return set(plan.layers)

    def uses(self, space: BitfitSpace, dims: ModelDims) -> dict[str, list[str]]:
        """The projections whose bias trains, and the block's norms (by path) under ``norms``."""
        biases = space.resolve_biases(dims)
        norms = list(dims.norms_per_block) if NORMS in biases else []
        return {BIAS: [b for b in biases if b != NORMS] + norms}

    def placed(self, plan: BitfitPlan) -> list[Placement]:
        return [(layer, self.name, 1.0) for layer in plan.layers]

    def plan_to_dict(self, plan: BitfitPlan) -> dict[str, Any]:
        return {"layers": list(plan.layers), "biases": list(plan.biases)}

    def plan_from_dict(self, data: dict[str, Any]) -> BitfitPlan:
        return BitfitPlan(
            layers=tuple(int(x) for x in data["layers"]),
            biases=tuple(str(b) for b in data["biases"]),
        )

    def summary(self, plan: BitfitPlan) -> str:
        return f"bitfit on {layer_ranges(list(plan.layers))} ({','.join(plan.biases)})"


FAMILY = BitfitFamily()
