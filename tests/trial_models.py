"""Trial models for the trainer tests: a spec's default configuration with live adapters."""

from __future__ import annotations

from typing import Any

import torch

from paretune.spaces import config_from_params, dims_from_config, resolve_model
from paretune.trainers.run import build_trial_model


def live_trial_model(spec: Any) -> tuple[Any, Any, Any, Any, Any, int]:
    """``(spec, config, model, dims, data, pad_id)`` for ``spec``'s default configuration, its
    LoRA B matrices drawn from N(0, 0.1): they start at zero, where the adapters change nothing."""
    config = config_from_params({}, spec, dims_from_config(resolve_model(spec.model.name).config))
    net, dims, data, pad = build_trial_model(spec, config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return spec, config, net, dims, data, pad
