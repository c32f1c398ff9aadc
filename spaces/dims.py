"""Dimension types shared by the spec and the families: fixed values, choice lists, ranges.

A dimension in the spec is a fixed value (no search), a list (a categorical choice) or a
``{low, high, log}`` range (continuous). ``suggest`` samples one on an Optuna trial under a
stable parameter name; fixed values are not parameters at all.
"""

from __future__ import annotations

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(Strict):
    """A continuous dimension: sampled uniformly (or log-uniformly) in [low, high]."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(
                f"low ({self.low}) must be below high ({self.high}); the bounds are reversed"
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


FloatDim = Union[float, list[float], FloatRange]
IntDim = Union[int, list[int]]
BoolDim = Union[bool, list[bool]]


def values_of(dim: Any) -> list[Any]:
    """The values a dimension can take (a range gives its two bounds)."""
    if isinstance(dim, FloatRange):
        return [dim.low, dim.high]
    if isinstance(dim, list):
        return list(dim)
    return [dim]


def n_choices(dim: Any) -> int | None:
    """How many values a dimension has: 1 if fixed, None if continuous."""
    if isinstance(dim, FloatRange):
        return None
    if isinstance(dim, list):
        return len(dim)
    return 1


def is_searched(dim: Any) -> bool:
    return n_choices(dim) != 1


def suggest(trial: Any, name: str, dim: Any) -> Any:
    """Sample ``dim`` on an Optuna trial as parameter ``name``; fixed values are returned as they are."""
    if isinstance(dim, FloatRange):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    if isinstance(dim, list):
        if len(dim) == 1:
            return dim[0]
        return trial.suggest_categorical(name, list(dim))
    return dim


def unique_list(values: list[Any], what: str) -> list[Any]:
    if not values:
        raise ValueError(f"{what} must list at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value twice: {values}")
    return values
