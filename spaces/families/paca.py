"""PaCA, partial-connection adaptation: train k input columns of a projection's own weight.

For each adapted module, ``k`` of its input columns, drawn at random with the trial's seed, are
trained in place of the frozen weight's columns: the forward pass is the module's own matrix
product with those columns replaced (``paretune.trainers.injectors.paca.PacaLinear``), no extra
layer.

Spec section (``space.paca``)::

    paca: {targets: [query, value], columns: [0, 8, 16, 32]}   # paca.columns.L3.query, 0 = untouched
    paca: {columns: [8, 16], mode: shared}                     # paca.columns + paca.layer.L3
    paca: {columns: [16], mode: shared, mask: shared}          # the study-wide mask layer.L3

Parameters per adapted module: ``out_features * k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ..architectures import ModelDims
from ..dims import Strict, suggest, unique_list
from .base import BASE_WEIGHT, BIAS, Family, Problem, Refusal, layer_ranges
from .placement import (
    Mask,
    Mode,
    check_mode_mask,
    check_size_list,
    mask_dimensions,
    sample_mask,
    unknown_targets,
)
from .stored import Placement


class PacaSpace(Strict):
    """The PaCA section of a spec."""

    targets: list[str] = Field(default_factory=lambda: ["query", "value"])
    columns: list[int] = Field(default_factory=lambda: [0, 8, 16, 32])
    mode: Mode = "per-layer"
    mask: Mask = "own"

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        return unique_list(v, "targets")

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: list[int]) -> list[int]:
        return check_size_list(v, "columns")

    @model_validator(mode="after")
    def _rest(self) -> PacaSpace:
        check_mode_mask(self.mode, self.mask)
        return self


@dataclass(frozen=True)
class PacaPlan:
    """Sampled PaCA: (layer, target, k) for every adapted module, k > 0."""

    columns: tuple[tuple[int, str, int], ...]

    def modules(self) -> dict[tuple[int, str], int]:
        return {(layer, target): k for layer, target, k in self.columns}


class PacaFamily(Family):
    name: ClassVar[str] = "paca"
    space_model = PacaSpace
    plan_type = PacaPlan

    def check(self, space: PacaSpace, dims: ModelDims, layers: list[int]) -> list[Problem]:
        problems: list[Problem] = [
            (("targets", i), m)
            for i, m in unknown_targets(dims.resolve_targets(space.targets), dims)
        ]
        for t in dims.resolve_targets(space.targets):
            if t in dims.targets and max(space.columns) > dims.targets[t].in_features:
                limit = dims.targets[t].in_features
                problems.append(
                    (
                        ("columns",),
                        f"{max(space.columns)} columns is more than {t}'s {limit} input columns; use <= {limit}",
                    )
                )
                break
        return problems

    def dimensions(
        self, space: PacaSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        n = len(space.columns)
        if space.mode in ("shared", "all"):
            mask = mask_dimensions(self.name, space.mask, layers) if space.mode == "shared" else []
            return ([("paca.columns", n)] if n > 1 else []) + mask
        if n == 1:
            return []
        return [
            (f"paca.columns.L{layer}.{t}", n)
            for layer in layers
            for t in dims.resolve_targets(space.targets)
        ]

    def sample(
        self, trial: Any, space: PacaSpace, dims: ModelDims, layers: list[int]
    ) -> PacaPlan | None:
        placed: list[tuple[int, str, int]] = []
        if space.mode in ("shared", "all"):
            k = int(suggest(trial, "paca.columns", space.columns))
            on = (
                layers if space.mode == "all" else sample_mask(trial, self.name, space.mask, layers)
            )
            placed = (
                [(layer, t, k) for layer in on for t in dims.resolve_targets(space.targets)]
                if k > 0
                else []
            )
        else:
            for layer in layers:
                for t in dims.resolve_targets(space.targets):
                    k = int(suggest(trial, f"paca.columns.L{layer}.{t}", space.columns))
                    if k > 0:
                        placed.append((layer, t, k))
        return PacaPlan(tuple(placed)) if placed else None

    def module_params(self, dims: ModelDims, target: str, k: int) -> int:
        return dims.targets[target].out_features * k

    def count(self, plan: PacaPlan, dims: ModelDims) -> int:
        return sum(self.module_params(dims, t, k) for _, t, k in plan.columns)

    def bounds(self, space: PacaSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        def total(k: int) -> int:
            return len(layers) * sum(
                self.module_params(dims, t, k) for t in dims.resolve_targets(space.targets)
            )

        low = 0 if space.mode == "shared" or 0 in space.columns else total(min(space.columns))
        return low, total(max(space.columns))

    def layers(self, plan: PacaPlan, dims: ModelDims) -> set[int]:
        return {layer for layer, _, _ in plan.columns}

    def uses(self, space: PacaSpace, dims: ModelDims) -> dict[str, list[str]]:
        return {BASE_WEIGHT: list(dims.resolve_targets(space.targets))}

    def refusals(self, space: PacaSpace, dims: ModelDims) -> list[Refusal]:
        return [
            Refusal(
                BIAS,
                tuple(dims.resolve_targets(space.targets)),
                "a PaCA layer (paretune.trainers.injectors.paca.PacaLinear) keeps its bias frozen, "
                "so bitfit could not train it; remove those from bitfit.biases or from paca.targets",
            )
        ]

    def placed(self, plan: PacaPlan) -> list[Placement]:
        return [(layer, t, float(k)) for layer, t, k in plan.columns]

    def plan_to_dict(self, plan: PacaPlan) -> dict[str, Any]:
        return {"columns": [list(x) for x in plan.columns]}

    def plan_from_dict(self, data: dict[str, Any]) -> PacaPlan:
        return PacaPlan(columns=tuple((int(a), str(b), int(c)) for a, b, c in data["columns"]))

    def summary(self, plan: PacaPlan) -> str:
        by_k: dict[int, dict[int, list[str]]] = {}
        for layer, t, k in plan.columns:
            by_k.setdefault(k, {}).setdefault(layer, []).append(t)
        parts = []
        for k in sorted(by_k, reverse=True):
            groups: dict[tuple[str, ...], list[int]] = {}
            for layer, targets in by_k[k].items():
                groups.setdefault(tuple(targets), []).append(layer)
            for targets, ls in sorted(groups.items(), key=lambda kv: min(kv[1])):
                parts.append(f"k{k} on {layer_ranges(ls)} {','.join(targets)}")
        return "paca " + " + ".join(parts)


FAMILY = PacaFamily()
