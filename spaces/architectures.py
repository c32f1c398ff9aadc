"""Model dimensions: what placement and the parameter counts need to know about a model.

:class:`ModelDims` is read off the model's module tree built on the meta device from its config
(:mod:`paretune.spaces.module_tree`), so every Hugging Face encoder or decoder works without a
hand-written table.

Target names are generic so a spec reads the same on every architecture: ``query``, ``key``,
``value``, ``attention_output``, ``gate``, ``intermediate``, ``output`` (``qkv`` where the three
are fused); ``q``, ``k``, ``v``, ``o``, ``up`` and ``down`` are accepted for them
(:data:`TARGET_ALIASES`). A projection that cannot be named keeps its path in the block.

The PEFT families read more than names: IA3 scales the input of ``ffn_output_target`` (its
feed-forward module) and the output of every other target; BitFit trains the biases a
``TargetShape`` marks and the block's norms; the serial adapter transforms the output of
``ffn_output_target``; the parallel adapter reads the input of ``ffn_input_target`` and adds to
the output of ``ffn_output_target``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    task: str = "classification"  # "causal_lm": the head is the frozen LM head, counted as 0
    aliases: dict[str, str] = field(default_factory=dict)  # real path in a block -> generic name
    takes_past_key_values: bool = True  # peft's prefix tuning needs it (DeBERTa, DistilBERT: no)

    def block(self, i: int) -> str:
        return f"{self.block_path}.{i}"

    def module_name(self, layer: int, target: str) -> str:
        return f"{self.block(layer)}.{self.targets[target].path}"

    @property
    def head_params(self) -> int:
        return sum(self.head.values())

    def resolve_targets(self, names: Any) -> list[str]:
        """``names`` as this model knows them, in order, without duplicates: aliases made generic
        (``q`` -> ``query``), ``all`` expanded to every projection of a block, and ``query``,
        ``key``, ``value`` placed on the fused ``qkv`` where the model fuses them (GPT-2, Phi-3,
        GPT-NeoX, ModernBERT). A name the model lacks is kept, for :meth:`target_problem`."""
        out: list[str] = []
        for raw in [names] if isinstance(names, str) else list(names):
            name = canonical_target(str(raw))
            if name == ALL_TARGETS:
                expanded = list(self.targets)
            elif (
                name in ("query", "key", "value")
                and name not in self.targets
                and "qkv" in self.targets
            ):
                expanded = ["qkv"]
            else:
                expanded = [name]
            out += [t for t in expanded if t not in out]
        return out

    def target_problem(self, name: str) -> str | None:
        """None for a target of this model, else a one-line reason naming what is allowed."""
        if name in self.targets:
            return None
        allowed = ", ".join(self.targets)
        if name in self.aliases:
            return f"{name!r} is {self.aliases[name]!r} on {self.model_type}: write {self.aliases[name]}"
        return f"unknown target {name!r} for {self.model_type}; allowed: {allowed} (or all)"

    def describe(self) -> str:
        return (
            f"{self.arch} ({self.model_type}): {self.n_layers} layers, hidden {self.hidden}, "
            f"intermediate {self.intermediate}, {self.n_heads} heads"
        )


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


def canonical_target(name: str) -> str:
    """The generic target a user's name stands for (``q`` -> ``query``); others unchanged."""
    return TARGET_ALIASES.get(name, name)


ALL_TARGETS = "all"  # every projection of a block
TARGET_ALIASES = {
    "q": "query",
    "k": "key",
    "v": "value",
    "o": "attention_output",
    "up": "intermediate",
    "down": "output",
}
