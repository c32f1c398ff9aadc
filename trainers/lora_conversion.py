"""A PiSSA or OLoRA adapter rewritten as a plain LoRA on the original base weights.

Both inits start the adapter from the weight (``B0 A0``: its top singular vectors, or a QR factor)
and train on the residual ``W - s B0 A0``. What training changed is ``s (B A - B0 A0)``, which is a
LoRA of twice the rank on the untouched ``W``: ``A' = [A; A0]``, ``B' = [B, -B0]``, with alpha
scaled so that ``s`` stays the same (x2, or x sqrt(2) under rsLoRA's ``alpha / sqrt(r)``). Every
other tensor (the head, DoRA's magnitudes) is kept as trained.

peft's own ``save_pretrained(path_initial_model_for_weight_conversion=...)`` does the same sum,
but drops every tensor that is not ``lora_A``/``lora_B`` (a classifier head, DoRA's magnitudes)
and refuses per-module ranks under rsLoRA; paretune's plans have both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"


def doubled(
    state: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` (trained, as saved) with each LoRA pair stacked against its initial values."""
    out = dict(state)
    missing = sorted(k for k in state if ".lora_" in k and k not in initial)
    if missing:
        raise ValueError(f"no initial value for {missing[0]} ({len(missing)} tensors)")
    for key, tensor in state.items():
        if ".lora_A." in key:
            out[key] = torch.cat([tensor, initial[key].to(tensor)], dim=0)
        elif ".lora_B." in key:
            out[key] = torch.cat([tensor, -initial[key].to(tensor)], dim=1)
    return out


def convert_to_original_base(directory: str | Path, initial: dict[str, torch.Tensor]) -> None:
    """Rewrite the PEFT adapter in ``directory`` (trained with a base-changing init) to load on
    the original base model, in place."""
    from safetensors.torch import load_file, save_file  # noqa: PLC0415

    d = Path(directory)
    state = load_file(str(d / WEIGHTS_FILE))
    save_file(doubled(state, initial), str(d / WEIGHTS_FILE), metadata={"format": "pt"})
    config = json.loads((d / CONFIG_FILE).read_text())
    factor = math.sqrt(2.0) if config.get("use_rslora") else 2.0
    config["r"] = 2 * int(config["r"])
    config["lora_alpha"] = factor * float(config["lora_alpha"])
    config["rank_pattern"] = {k: 2 * int(v) for k, v in (config.get("rank_pattern") or {}).items()}
    config["alpha_pattern"] = {
        k: factor * float(v) for k, v in (config.get("alpha_pattern") or {}).items()
    }
    config["init_lora_weights"] = True
    (d / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
