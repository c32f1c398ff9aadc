"""Tiny random configs of the architectures paretune is tested on (no weights, no hub)."""

from __future__ import annotations

from typing import Any

BASE: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 256,
    "pad_token_id": 0,
}
DECODER = {**BASE, "num_key_value_heads": 2, "tie_word_embeddings": False}

CONFIGS: dict[str, dict[str, Any]] = {
    "bert": {**BASE, "model_type": "bert"},
    "roberta": {**BASE, "model_type": "roberta", "pad_token_id": 1},
    "deberta-v2": {
        **BASE,
        "model_type": "deberta-v2",
        "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_buckets": 32,
        "max_relative_positions": 64,
        "share_att_key": True,
    },
    "modernbert": {
        **BASE,
        "model_type": "modernbert",
        "global_attn_every_n_layers": 2,
        "local_attention": 16,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "cls_token_id": 1,
        "sep_token_id": 2,
    },
    "distilbert": {
        "model_type": "distilbert",
        "vocab_size": 30522,
        "dim": 64,
        "n_layers": 3,
        "n_heads": 4,
        "hidden_dim": 128,
        "max_position_embeddings": 256,
        "pad_token_id": 0,
    },
    "llama": {**DECODER, "model_type": "llama"},
    "mistral": {**DECODER, "model_type": "mistral"},
    "qwen2": {**DECODER, "model_type": "qwen2"},
    "qwen3": {**DECODER, "model_type": "qwen3", "head_dim": 16},
    "gemma2": {**DECODER, "model_type": "gemma2", "head_dim": 16},
    "phi3": {**DECODER, "model_type": "phi3", "bos_token_id": 1, "eos_token_id": 2},
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 30522,
        "n_embd": 64,
        "n_layer": 3,
        "n_head": 4,
        "n_positions": 256,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "gpt_neox": {**BASE, "model_type": "gpt_neox", "bos_token_id": 1, "eos_token_id": 2},
}
ENCODERS = ("bert", "roberta", "deberta-v2", "modernbert", "distilbert")
DECODERS = tuple(name for name in CONFIGS if name not in ENCODERS)
