"""Where a stored plan places its modules, read leniently: the fallback of ``Family.placements``.

A plan in the store may come from another paretune version (a family this one does not know, or
a family's older shape), so the reader takes the shapes families use without knowing which:
lists of ``[layer, size]`` / ``[layer, target]`` / ``[layer, target, size]`` or of
``{layer, target, size}`` records, layer lists, ``{layer: size}`` and ``{layer: {target: size}}``
maps, and global scalars such as a prefix length. Anything else is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

GLOBAL = "global"  # the layer of a module that covers every layer (a prefix)
SIZE_KEYS = ("rank", "size", "columns", "bottleneck", "value")
GLOBAL_SIZE_KEYS = ("length", "prefix_length", "n_tokens", "size", "num_virtual_tokens")

Placement = tuple[int | str, str, float]  # (layer or GLOBAL, module, size)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _layer(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v[1:] if v[:1] in ("L", "l") else v
        return int(s) if s.isdigit() else None
    return None


def _from_entries(family: str, key: str, entries: list[Any]) -> list[Placement]:
    out: list[Placement] = []
    for e in entries:
        if isinstance(e, list | tuple) and e:
            layer = _layer(e[0])
            if layer is None:
                continue
            if len(e) >= 3 and isinstance(e[1], str):
                size = _number(e[2])
                target = e[1]
            elif len(e) == 2 and isinstance(e[1], str):
                size, target = 1.0, e[1]
            elif len(e) == 2:
                size, target = _number(e[1]), family
            else:
                size, target = 1.0, family
            if size:
                out.append((layer, target, size))
        elif isinstance(e, Mapping):
            layer = _layer(e.get("layer"))
            if layer is None:
                continue
            target = str(e.get("target") or e.get("module") or family)
            size = next((_number(e[k]) for k in SIZE_KEYS if k in e), 1.0)
            if size:
                out.append((layer, target, size))
        elif "layer" in key.lower():
            layer = _layer(e)
            if layer is not None:
                out.append((layer, family, 1.0))
    return out


def _from_map(family: str, value: Mapping[Any, Any]) -> list[Placement]:
    """``{layer: size}`` or ``{layer: {target: size}}``."""
    out: list[Placement] = []
    for k, v in value.items():
        if isinstance(v, Mapping):
            for target, s in v.items():
                size = _number(s)
                if size:
                    out.append((_layer(k) or 0, str(target), size))
        else:
            size = _number(v)
            if size:
                out.append((_layer(k) or 0, family, size))
    return out


def read_placements(family: str, part: Any) -> list[Placement]:
    """(layer or "global", module, size) of what one family's stored ``part`` places, read
    without knowing its shape; the family's name as the module where none is named."""
    if isinstance(part, list):
        return _from_entries(family, family, part)
    if not isinstance(part, Mapping):
        size = _number(part)
        return [(GLOBAL, family, size)] if size else []
    found: list[Placement] = []
    for key, value in part.items():
        if isinstance(value, list):
            found += _from_entries(family, str(key), value)
        elif isinstance(value, Mapping) and value and all(_layer(k) is not None for k in value):
            found += _from_map(family, value)
    if not found:
        for key in GLOBAL_SIZE_KEYS:
            size = _number(part.get(key))
            if size:
                return [(GLOBAL, family, size)]
    if (
        not found
        and part.get("enabled", True)
        and not any(isinstance(v, list | Mapping) for v in part.values())
    ):
        found.append((GLOBAL, family, 1.0))
    return found
