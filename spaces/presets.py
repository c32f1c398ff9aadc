"""Named search spaces a spec selects with ``space.preset``.

A preset fills in the family sections the spec leaves out; anything the spec sets itself wins,
so ``preset: lora-placement`` plus ``lora: {ranks: [0, 8]}`` narrows the preset's ranks, and a
family (or ``combine``) set to ``false`` is dropped from the preset (``preset: mixed`` with
``bitfit: false`` on a model without biases).

Target names are the generic ones of ``paretune.spaces.architectures``, resolved on each model
(``ModelDims.resolve_targets``): ``all`` is every projection of a block (q, k, v, o, gate, up,
down on Llama), and ``query``/``value`` land on the fused ``qkv`` of GPT-2, Phi-3 or GPT-NeoX.
"""

from __future__ import annotations

from typing import Any

from .families import FAMILIES

PRESETS: dict[str, dict[str, Any]] = {
    # per-layer, per-target LoRA ranks over every attention and feed-forward projection
    "lora-placement": {
        "lora": {
            "mode": "per-layer",
            "targets": ["all"],
            "ranks": [0, 2, 4, 8, 16],
        }
    },
    # AutoPEFT (Zhou et al., 2024): serial adapter + parallel adapter + prefix, one size each
    # from a geometric ladder (0 = off) and ONE layer mask layer.L<i> shared by both adapters;
    # the prefix is global (peft's prefix tuning covers every layer)
    "autopeft": {
        "serial_adapter": {"mode": "shared", "mask": "shared", "sizes": {"ladder": 6}},
        "parallel_adapter": {"mode": "shared", "mask": "shared", "sizes": {"ladder": 6}},
        "prefix": {"length": [0, 2, 4, 8, 16, 32]},
    },
    # every family, one or two at a time (space.combine): which families, then the lowest block
    # (layer.from), then one size each on every block from there up; the first trials are each
    # family alone at sizes spread over the range (docs/families.md, "Combining families")
    "mixed": {
        "combine": {"max_families": 2, "layers": "from", "startup": True},
        # LoRA on query and value, or on every projection: the two placements people hand-pick
        "lora": {
            "mode": "all",
            "targets": [["query", "value"], ["all"]],
            "ranks": [1, 2, 4, 8, 16, 32],
        },
        "ia3": {"mode": "all"},
        "prefix": {"length": [2, 4, 8, 16, 32]},
        "serial_adapter": {"mode": "all", "sizes": [2, 4, 8, 16, 32, 64, 128]},
        "parallel_adapter": {
            "mode": "all",
            "sizes": [2, 4, 8, 16, 32, 64, 128],
            "scaling": [1.0, 4.0],
        },
        "bitfit": {"mode": "all"},
        "paca": {"mode": "all", "targets": ["query", "value"], "columns": [2, 4, 8, 16, 32, 64]},
    },
    # the full per-layer space of every family at once, on targets that may go together
    # (see families.clashes): every layer's switch of every family drawn in every trial
    "mixed-per-layer": {
        "lora": {"targets": ["query", "value"], "ranks": [0, 4, 8]},
        "ia3": {"targets": ["key", "output"]},
        "prefix": {"length": [0, 4, 8]},
        "serial_adapter": {"mode": "shared", "sizes": [0, 8, 16]},
        "parallel_adapter": {"mode": "shared", "sizes": [0, 8, 16]},
        "bitfit": {"biases": ["query", "key", "value", "output", "norms"]},
        "paca": {"targets": ["attention_output", "intermediate"], "columns": [0, 8, 16]},
    },
}


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("preset")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    dropped = (*FAMILIES, "combine")  # ``bitfit: false``, ``combine: false``
    merged = {k: v for k, v in data.items() if not (k in dropped and v is False)}
    for family, section in PRESETS[name].items():
        if data.get(family) is False:
            continue
        user = merged.get(family)
        if user is None:
            merged[family] = dict(section)
        elif isinstance(user, dict):
            merged[family] = {**section, **user}
    return merged
