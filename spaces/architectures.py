"""Model architectures: the one table of module names and shapes, read from a config alone.

Everything paretune needs to place adapters and count parameters (layers, hidden sizes, the
projections of each block with their shapes, the classification head) comes from the model's
``config.json``, without loading weights or importing torch. Supporting a new architecture is one
entry in :data:`ARCHITECTURES`.

Target names are generic so a spec reads the same on every architecture: ``query``, ``key``,
``value``, ``attention_output``, ``intermediate``, ``output`` (and ``gate`` on gated MLPs,
``qkv`` where the three are fused).

The PEFT families read more than names from the table: IA3 scales the input of
``ffn_output_target`` (its feed-forward module) and the output of every other target; BitFit
trains the biases a ``TargetShape`` marks and the block's norms when ``norm_bias``; the serial
adapter transforms the output of ``ffn_output_target``; the parallel adapter reads the input of
``ffn_input_target`` and adds to the output of ``ffn_output_target``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ModelError


@dataclass(frozen=True)
class TargetShape:
    """One projection inside a transformer block."""

    path: str  # relative to the block, e.g. "attention.self.query"
    in_features: int
    out_features: int
    bias: bool
    kind: str = "linear"  # "linear" | "conv1d" (GPT-2 stores weights transposed)


@dataclass(frozen=True)
class ModelDims:
    """The dimensions of one model, as far as adapters and parameter counts need them."""

    arch: str
    model_type: str
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    num_labels: int
    block_path: str  # "bert.encoder.layer" -> block i is f"{block_path}.{i}"
    targets: dict[str, TargetShape] = field(default_factory=dict)
    head: dict[str, int] = field(default_factory=dict)  # module path -> trainable parameters
    attention_target: str = "attention_output"  # the module whose output ends the attention block
    ffn_output_target: str = "output"  # the module whose output ends the feed-forward block
    ffn_input_target: str = "intermediate"  # a module whose input is the feed-forward block's input
    norm_bias: bool = True  # layer norms carry a bias (BERT, GPT-2) or not (Llama RMSNorm)
    norms_per_block: dict[str, int] = field(default_factory=dict)  # norm path -> size
    # the module whose output feeds block 0: the trainer may replace it to skip frozen blocks
    # (None: the architecture adds more after it, e.g. GPT-2's position embeddings)
    embeddings: str | None = None
    # the longest input the position embeddings allow (None: rotary or relative positions, no
    # hard limit): a longer task.max_length crashes in the embeddings, so validate refuses it
    max_positions: int | None = None

    def block(self, i: int) -> str:
        return f"{self.block_path}.{i}"

    def module_name(self, layer: int, target: str) -> str:
        return f"{self.block(layer)}.{self.targets[target].path}"

    @property
    def head_params(self) -> int:
        return sum(self.head.values())

    def describe(self) -> str:
        return (
            f"{self.arch} ({self.model_type}): {self.n_layers} layers, hidden {self.hidden}, "
            f"intermediate {self.intermediate}, {self.n_heads} heads"
        )


@dataclass(frozen=True)
class Architecture:
    name: str
    model_types: tuple[str, ...]
    dims: Callable[[dict[str, Any], int], ModelDims]


def _get(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is not None:
        return default
    raise ModelError(f"model config lacks {' / '.join(keys)}; paretune needs it to place adapters")


def _bert(cfg: dict[str, Any], num_labels: int) -> ModelDims:
    h = _get(cfg, "hidden_size")
    i = _get(cfg, "intermediate_size")
    prefix = cfg.get("model_type", "bert")
    prefix = "roberta" if prefix == "roberta" else "bert"
    targets = {
        "query": TargetShape("attention.self.query", h, h, True),
        "key": TargetShape("attention.self.key", h, h, True),
        "value": TargetShape("attention.self.value", h, h, True),
        "attention_output": TargetShape("attention.output.dense", h, h, True),
        "intermediate": TargetShape("intermediate.dense", h, i, True),
        "output": TargetShape("output.dense", i, h, True),
    }
    if prefix == "roberta":  # RobertaClassificationHead: dense + out_proj
        head = {"classifier": h * h + h + h * num_labels + num_labels}
    else:
        head = {"classifier": h * num_labels + num_labels}
    heads = _get(cfg, "num_attention_heads")
    return ModelDims(
        arch="bert",
        model_type=cfg.get("model_type", "bert"),
        n_layers=_get(cfg, "num_hidden_layers"),
        hidden=h,
        intermediate=i,
        n_heads=heads,
        n_kv_heads=heads,
        head_dim=h // heads,
        vocab_size=_get(cfg, "vocab_size"),
        num_labels=num_labels,
        block_path=f"{prefix}.encoder.layer",
        embeddings=f"{prefix}.embeddings",
        targets=targets,
        head=head,
        norms_per_block={"attention.output.LayerNorm": h, "output.LayerNorm": h},
    )


def _llama(cfg: dict[str, Any], num_labels: int) -> ModelDims:
    h = _get(cfg, "hidden_size")
    i = _get(cfg, "intermediate_size")
    nh = _get(cfg, "num_attention_heads")
    nkv = _get(cfg, "num_key_value_heads", default=nh)
    hd = cfg.get("head_dim") or h // nh
    ab = bool(cfg.get("attention_bias", False))
    mb = bool(cfg.get("mlp_bias", False))
    targets = {
        "query": TargetShape("self_attn.q_proj", h, nh * hd, ab),
        "key": TargetShape("self_attn.k_proj", h, nkv * hd, ab),
        "value": TargetShape("self_attn.v_proj", h, nkv * hd, ab),
        "attention_output": TargetShape("self_attn.o_proj", nh * hd, h, ab),
        "gate": TargetShape("mlp.gate_proj", h, i, mb),
        "intermediate": TargetShape("mlp.up_proj", h, i, mb),
        "output": TargetShape("mlp.down_proj", i, h, mb),
    }
    return ModelDims(
        arch="llama",
        model_type=cfg.get("model_type", "llama"),
        n_layers=_get(cfg, "num_hidden_layers"),
        hidden=h,
        intermediate=i,
        n_heads=nh,
        n_kv_heads=nkv,
        head_dim=hd,
        vocab_size=_get(cfg, "vocab_size"),
        num_labels=num_labels,
        block_path="model.layers",
        embeddings="model.embed_tokens",
        targets=targets,
        head={"score": h * num_labels},
        norm_bias=False,
        norms_per_block={"input_layernorm": h, "post_attention_layernorm": h},
    )


def _gpt2(cfg: dict[str, Any], num_labels: int) -> ModelDims:
    h = _get(cfg, "n_embd", "hidden_size")
    i = cfg.get("n_inner") or 4 * h
    nh = _get(cfg, "n_head", "num_attention_heads")
    targets = {
        "qkv": TargetShape("attn.c_attn", h, 3 * h, True, "conv1d"),
        "attention_output": TargetShape("attn.c_proj", h, h, True, "conv1d"),
        "intermediate": TargetShape("mlp.c_fc", h, i, True, "conv1d"),
        "output": TargetShape("mlp.c_proj", i, h, True, "conv1d"),
    }
    return ModelDims(
        arch="gpt2",
        model_type="gpt2",
        n_layers=_get(cfg, "n_layer", "num_hidden_layers"),
        hidden=h,
        intermediate=i,
        n_heads=nh,
        n_kv_heads=nh,
        head_dim=h // nh,
        vocab_size=_get(cfg, "vocab_size"),
        num_labels=num_labels,
        block_path="transformer.h",
        targets=targets,
        head={"score": h * num_labels},
        norms_per_block={"ln_1": h, "ln_2": h},
    )


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("bert", ("bert", "roberta"), _bert),
        Architecture("llama", ("llama", "mistral", "qwen2"), _llama),
        Architecture("gpt2", ("gpt2",), _gpt2),
    )
}


# model types whose positions are a learned table with a hard end (rotary ones have none)
LEARNED_POSITIONS = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "gpt2")
# absolute position ids start after the padding index in these (514 embeddings: 512 tokens)
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def position_limit(cfg: dict[str, Any]) -> int | None:
    """The longest input a model with learned absolute position embeddings can take."""
    if cfg.get("model_type") not in LEARNED_POSITIONS:
        return None
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        return None
    limit = cfg.get("n_positions") or cfg.get("max_position_embeddings")
    if not isinstance(limit, int):
        return None
    if cfg.get("model_type") in PADDING_OFFSET_POSITIONS:
        limit -= int(cfg.get("pad_token_id") or 0) + 1
    return limit


def dims_from_config(cfg: dict[str, Any], num_labels: int = 2) -> ModelDims:
    """ModelDims for a config dict; an unknown architecture names what paretune would need."""
    model_type = cfg.get("model_type")
    for arch in ARCHITECTURES.values():
        if model_type in arch.model_types:
            return replace(arch.dims(cfg, num_labels), max_positions=position_limit(cfg))
    known = ", ".join(t for a in ARCHITECTURES.values() for t in a.model_types)
    raise ModelError(
        f"unsupported architecture model_type={model_type!r}: paretune needs an entry in "
        f"paretune.spaces.architectures.ARCHITECTURES naming its block path, projections and head "
        f"(supported: {known})"
    )
