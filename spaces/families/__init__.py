"""Registry of PEFT families. Adding a family: one module here and one line in FAMILIES."""

from __future__ import annotations

from typing import Any

from .base import Family, layer_ranges
from .lora import FAMILY as LORA

FAMILIES: dict[str, Family] = {f.name: f for f in (LORA,)}



def incompatible(spec: Any, dims: Any) -> list[str]:
    """Combinations of families that cannot be applied together (one message each)."""
    return []


__all__ = ["FAMILIES", "Family", "incompatible", "layer_ranges"]
