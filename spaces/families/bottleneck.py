"""Bottleneck adapters (serial and parallel): what the two families share.

An adapter is ``down`` (hidden -> b, with bias), an activation and ``up`` (b -> hidden, with bias),
so one adapter of bottleneck size ``b`` trains ``2 * hidden * b + b + hidden`` parameters. Where
it sits in the block is the trainer's business (``paretune.trainers.injectors``); the serial and
parallel families differ only in their name and their documentation.

Per-layer mode: ``<family>.size.L3`` over the sizes, 0 meaning no adapter in that layer. Shared
mode: one ``<family>.size`` and a layer mask (``<family>.layer.L3``, or the study-wide
``layer.L3`` with ``mask: shared``). Sizes are a list or a ladder ``{ladder: K}``: hidden/2 ..
hidden/2**K, plus 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..architectures import ModelDims
from ..dims import FloatDim, Strict, n_choices, suggest, unique_list, values_of
from .base import Family, Problem, layer_ranges
from .placement import (
    Mask,
    Mode,
    SizeChoices,
    check_mode_mask,
    check_size_list,
    ladder_problem,
    mask_dimensions,
    resolve_sizes,
    sample_mask,
)
from .stored import Placement


class BottleneckSpace(Strict):
    """The section of a bottleneck-adapter family."""

    sizes: SizeChoices = Field(default_factory=lambda: [0, 8, 16, 32])
    mode: Mode = "per-layer"
    mask: Mask = "own"
    activation: Literal["relu", "gelu"] = "relu"
    scaling: FloatDim = 1.0

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: SizeChoices) -> SizeChoices:
        return check_size_list(v, "sizes") if isinstance(v, list) else v

    @model_validator(mode="after")
    def _rest(self) -> BottleneckSpace:
        check_mode_mask(self.mode, self.mask)
        if isinstance(self.scaling, list):
            unique_list(self.scaling, "scaling")
        if any(s <= 0 for s in values_of(self.scaling)):
            raise ValueError(f"scaling must be > 0, got {self.scaling}")
        return self


@dataclass(frozen=True)
class BottleneckPlan:
    """Sampled adapters: ``sizes`` holds (layer, bottleneck size) for every adapted layer, size > 0."""

    sizes: tuple[tuple[int, int], ...]
    activation: str = "relu"
    scaling: float = 1.0

    def modules(self) -> dict[int, int]:
        return dict(self.sizes)


class BottleneckFamily(Family):
    """Shared sampling and counting; subclasses set ``name``, ``space_model`` and ``plan_type``."""

    name: ClassVar[str]
    space_model: ClassVar[type[Strict]] = BottleneckSpace
    plan_type: ClassVar[type] = BottleneckPlan

    def check(self, space: BottleneckSpace, dims: ModelDims, layers: list[int]) -> list[Problem]:
        problem = ladder_problem(space.sizes, dims.hidden)
        return [(("sizes",), problem)] if problem else []

    def dimensions(
        self, space: BottleneckSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        sizes = resolve_sizes(space.sizes, dims.hidden)
        out: list[tuple[str, int | None]] = []
        if space.mode in ("shared", "all"):
            if len(sizes) > 1:
                out.append((f"{self.name}.size", len(sizes)))
            if space.mode == "shared":
                out += mask_dimensions(self.name, space.mask, layers)
        elif len(sizes) > 1:
            out += [(f"{self.name}.size.L{layer}", len(sizes)) for layer in layers]
        if n_choices(space.scaling) != 1:
            out.append((f"{self.name}.scaling", n_choices(space.scaling)))
        return out

    def sample(
        self, trial: Any, space: BottleneckSpace, dims: ModelDims, layers: list[int]
    ) -> BottleneckPlan | None:
        sizes = resolve_sizes(space.sizes, dims.hidden)
        placed: list[tuple[int, int]] = []
        if space.mode in ("shared", "all"):
            size = int(suggest(trial, f"{self.name}.size", sizes))
            on = (
                layers if space.mode == "all" else sample_mask(trial, self.name, space.mask, layers)
            )
            placed = [(layer, size) for layer in on] if size > 0 else []
        else:
            for layer in layers:
                size = int(suggest(trial, f"{self.name}.size.L{layer}", sizes))
                if size > 0:
                    placed.append((layer, size))
        scaling = float(suggest(trial, f"{self.name}.scaling", space.scaling))
        if not placed:
            return None
        return self.plan_type(tuple(placed), space.activation, scaling)

    def module_params(self, dims: ModelDims, size: int) -> int:
        return 2 * dims.hidden * size + size + dims.hidden

    def count(self, plan: BottleneckPlan, dims: ModelDims) -> int:
        return sum(self.module_params(dims, size) for _, size in plan.sizes)

    def bounds(self, space: BottleneckSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        sizes = resolve_sizes(space.sizes, dims.hidden)
        high = len(layers) * self.module_params(dims, max(sizes))
        if space.mode == "shared" or 0 in sizes:
            return 0, high  # every layer masked off / a size 0
        return len(layers) * self.module_params(dims, min(sizes)), high

    def layers(self, plan: BottleneckPlan, dims: ModelDims) -> set[int]:
        return {layer for layer, _ in plan.sizes}

    def placed(self, plan: BottleneckPlan) -> list[Placement]:
        return [(layer, self.name, float(size)) for layer, size in plan.sizes]

    def plan_to_dict(self, plan: BottleneckPlan) -> dict[str, Any]:
        return {
            "sizes": [list(x) for x in plan.sizes],
            "activation": plan.activation,
            "scaling": plan.scaling,
        }

    def plan_from_dict(self, data: dict[str, Any]) -> BottleneckPlan:
        return self.plan_type(
            sizes=tuple((int(a), int(b)) for a, b in data["sizes"]),
            activation=str(data.get("activation", "relu")),
            scaling=float(data.get("scaling", 1.0)),
        )

    def summary(self, plan: BottleneckPlan) -> str:
        by_size: dict[int, list[int]] = {}
        for layer, size in plan.sizes:
            by_size.setdefault(size, []).append(layer)
        parts = [
            f"b{size} on {layer_ranges(ls)}" for size, ls in sorted(by_size.items(), reverse=True)
        ]
        scaling = f" x{plan.scaling:g}" if plan.scaling != 1.0 else ""
        return f"{self.name} " + " + ".join(parts) + scaling
