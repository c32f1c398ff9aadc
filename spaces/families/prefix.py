"""Prefix tuning: trained keys and values prepended to every layer's attention (through peft).

The prefix is global: every layer of the model gets ``length`` virtual tokens, whatever
``space.layers`` and any layer mask say (peft's prefix tuning fills the attention cache of all
layers). Keys and values are trained directly, without peft's optional reparameterisation MLP.

Spec section (``space.prefix``)::

    prefix: {length: [0, 8, 16, 32]}    # prefix.length, 0 meaning no prefix
    prefix: {length: 16}                # fixed, nothing searched

Parameters: ``length * layers * 2 * kv_heads * head_dim`` (keys and values of every layer; with
grouped-query attention only the key-value heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..architectures import ModelDims
from ..dims import IntDim, Strict, n_choices, suggest, values_of
from .base import Family
from .placement import check_size_list
from .stored import GLOBAL, Placement

MAX_LENGTH = 512


class PrefixSpace(Strict):
    """The prefix tuning section of a spec."""

    length: IntDim = Field(default_factory=lambda: [0, 4, 8, 16])

    @field_validator("length")
    @classmethod
    def _length(cls, v: IntDim) -> IntDim:
        if isinstance(v, list):
            v = check_size_list(v, "length")
        elif v < 1:
            raise ValueError(f"length must be >= 1 (or a list, where 0 means no prefix), got {v}")
        if max(values_of(v)) > MAX_LENGTH:
            raise ValueError(f"length must be <= {MAX_LENGTH}, got {max(values_of(v))}")
        return v


@dataclass(frozen=True)
class PrefixPlan:
    """Sampled prefix: the number of virtual tokens (> 0)."""

    length: int


class PrefixFamily(Family):
    name: ClassVar[str] = "prefix"
    space_model = PrefixSpace
    layer_placed: ClassVar[bool] = False
    plan_type = PrefixPlan

    def check(self, space: PrefixSpace, dims: ModelDims, layers: list[int]) -> list[Any]:
        if dims.takes_past_key_values:
            return []
        return [
            (
                (),
                f"{dims.model_type} takes no past_key_values, which peft's prefix tuning feeds "
                "its virtual tokens through; drop prefix for this model (under a preset: "
                "prefix: false)",
            )
        ]

    def dimensions(
        self, space: PrefixSpace, dims: ModelDims, layers: list[int]
    ) -> list[tuple[str, int | None]]:
        return [("prefix.length", n_choices(space.length))] if n_choices(space.length) != 1 else []

    def sample(
        self, trial: Any, space: PrefixSpace, dims: ModelDims, layers: list[int]
    ) -> PrefixPlan | None:
        length = int(suggest(trial, "prefix.length", space.length))
        return PrefixPlan(length) if length > 0 else None

    def per_token(self, dims: ModelDims) -> int:
        return dims.n_layers * 2 * dims.n_kv_heads * dims.head_dim

    def count(self, plan: PrefixPlan, dims: ModelDims) -> int:
        return plan.length * self.per_token(dims)

    def bounds(self, space: PrefixSpace, dims: ModelDims, layers: list[int]) -> tuple[int, int]:
        lengths = values_of(space.length)
        return min(lengths) * self.per_token(dims), max(lengths) * self.per_token(dims)

    def plan_from_dict(self, data: dict[str, Any]) -> PrefixPlan:
        return PrefixPlan(length=int(data["length"]))

    def placed(self, plan: PrefixPlan) -> list[Placement]:
        return [(GLOBAL, self.name, float(plan.length))]

    def summary(self, plan: PrefixPlan) -> str:
        return f"prefix {plan.length} tokens"


FAMILY = PrefixFamily()
