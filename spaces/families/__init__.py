"""Registry of PEFT families. Adding a family: one module here and one line in FAMILIES."""

from __future__ import annotations

from typing import Any

from .base import Family, Refusal, layer_ranges
from .bitfit import FAMILY as BITFIT
from .ia3 import FAMILY as IA3
from .ln_tuning import FAMILY as LN_TUNING
from .lora import FAMILY as LORA
from .paca import FAMILY as PACA
from .parallel_adapter import FAMILY as PARALLEL_ADAPTER
from .prefix import FAMILY as PREFIX
from .serial_adapter import FAMILY as SERIAL_ADAPTER
from .stored import GLOBAL, Placement, read_placements

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (LORA, IA3, PREFIX, SERIAL_ADAPTER, PARALLEL_ADAPTER, BITFIT, PACA, LN_TUNING)
}


def incompatible(spec: Any, dims: Any) -> list[str]:
    """Combinations of the spec's families that cannot be applied together (one message each).

    Under ``space.combine`` a trial draws which families it uses, and a combination that clashes
    is simply never drawn (:mod:`paretune.spaces.combine`), so nothing is refused there."""
    if getattr(spec.space, "combine", None) is not None:
        return []
    return clashes(dict(spec.space.enabled_families()), dims)


def clashes(on: dict[str, Any], dims: Any) -> list[str]:
    """Why the family sections ``on`` (name -> section) cannot train together; [] when they can.

    Families may share a module unless one of them refuses what the other does there
    (:meth:`Family.refusals` against :meth:`Family.uses`); every other combination trains
    together (see docs/families.md). Pairs and messages follow the registry's order.
    """
    names = [n for n in FAMILIES if n in on]
    problems: list[str] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            problems += _pair(a, b, on, dims)
    return problems


def _pair(a: str, b: str, on: dict[str, Any], dims: Any) -> list[str]:
    """The clashes of families ``a`` and ``b`` (``a`` first in the registry), once per use."""
    out: list[str] = []
    seen: set[str] = set()
    for refuser, other in ((a, b), (b, a)):
        used = FAMILIES[other].uses(on[other], dims)
        for r in FAMILIES[refuser].refusals(on[refuser], dims):
            theirs = used.get(r.use, [])
            first, second = (r.modules, theirs) if refuser == a else (theirs, r.modules)
            both = [m for m in first if m in second]
            if not both or r.use in seen:
                continue
            seen.add(r.use)
            label = r.label or refuser
            names = f"{label} and {other}" if refuser == a else f"{other} and {label}"
            out.append(f"{names} cannot share a {r.noun} ({', '.join(both)}): {r.reason}")
    return out


__all__ = [
    "FAMILIES",
    "GLOBAL",
    "Family",
    "Placement",
    "Refusal",
    "clashes",
    "incompatible",
    "layer_ranges",
    "read_placements",
]
