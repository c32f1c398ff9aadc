"""Registry of PEFT families. Adding a family: one module here and one line in FAMILIES."""

from __future__ import annotations

from typing import Any

from ..dims import values_of
from .base import Family, layer_ranges
from .bitfit import FAMILY as BITFIT
from .ia3 import FAMILY as IA3
from .lora import FAMILY as LORA
from .paca import FAMILY as PACA
from .parallel_adapter import FAMILY as PARALLEL_ADAPTER
from .prefix import FAMILY as PREFIX
from .serial_adapter import FAMILY as SERIAL_ADAPTER

FAMILIES: dict[str, Family] = {
    f.name: f for f in (LORA, IA3, PREFIX, SERIAL_ADAPTER, PARALLEL_ADAPTER, BITFIT, PACA)
}


def _shared(a: list[str], b: list[str]) -> list[str]:
    return [t for t in a if t in b]


def incompatible(spec: Any, dims: Any) -> list[str]:
    """Combinations of the spec's families that cannot be applied together (one message each).

    Under ``space.combine`` a trial draws which families it uses, and a combination that clashes
    is simply never drawn (:mod:`paretune.spaces.combine`), so nothing is refused there."""
    if getattr(spec.space, "combine", None) is not None:
        return []
    return clashes(dict(spec.space.enabled_families()), dims)


def clashes(on: dict[str, Any], dims: Any) -> list[str]:
    """Why the family sections ``on`` (name -> section) cannot train together; [] when they can.

    Families may share a module unless one of them would defeat the other there; every
    combination not listed here trains together (see docs/families.md).
    """
    lora, ia3, paca, bitfit = (on.get(n) for n in ("lora", "ia3", "paca", "bitfit"))
    problems: list[str] = []
    if lora is not None and ia3 is not None:
        both = _shared(lora.all_targets, ia3.resolve_targets(dims))
        if both:
            problems.append(
                f"lora and ia3 cannot share a target ({', '.join(both)}): both are peft tuners, and paretune "
                "stacks peft tuners on different modules only (peft's layers are not made to wrap each other, "
                "and the fused LoRA kernel would skip the IA3 scaling); give them disjoint targets"
            )
    if lora is not None and paca is not None and True in values_of(lora.dora):
        both = _shared(lora.all_targets, paca.targets)
        if both:
            problems.append(
                f"lora with dora and paca cannot share a target ({', '.join(both)}): DoRA normalises the frozen "
                "base weight, which PaCA changes column by column; turn dora off or give them disjoint targets"
            )
    if bitfit is not None and paca is not None:
        both = _shared(bitfit.resolve_biases(dims), paca.targets)
        if both:
            problems.append(
                f"bitfit and paca cannot share a target ({', '.join(both)}): a PaCA layer "
                "(paretune.trainers.fused.PacaLinear) keeps its bias frozen, so bitfit could not train it; "
                "remove those from bitfit.biases or from paca.targets"
            )
    return problems


__all__ = ["FAMILIES", "Family", "clashes", "incompatible", "layer_ranges"]
