"""Named search spaces a spec selects with ``space.preset``.

A preset fills in the family sections the spec leaves out; anything the spec sets itself wins,
so ``preset: lora-placement`` plus ``lora: {ranks: [0, 8]}`` narrows the preset's ranks.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # per-layer, per-target LoRA ranks over every attention and feed-forward projection
    "lora-placement": {
        "lora": {
            "mode": "per-layer",
            "targets": ["query", "key", "value", "attention_output", "intermediate", "output"],
            "ranks": [0, 2, 4, 8, 16],
        }
    },
}


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("preset")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    merged = dict(data)
    for family, section in PRESETS[name].items():
        user = merged.get(family)
        if user is None:
            merged[family] = dict(section)
        elif isinstance(user, dict):
            merged[family] = {**section, **user}
    return merged
