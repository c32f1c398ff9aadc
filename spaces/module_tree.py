"""A model's dimensions read off its module tree, built on the meta device from its config.

No weights are read and no memory is allocated: ``from_config`` under ``torch.device("meta")``
builds the same modules the trainer will build, so the blocks, projections, norms and head that
paretune places adapters on and counts are the real ones, for any Hugging Face encoder or decoder.

- **Blocks**: the longest ``nn.ModuleList`` of the model. What a block holds is what every block
  holds (the intersection: ModernBERT's first block has no attention norm).
- **Projections** (``nn.Linear`` and GPT-2's ``Conv1D``) get generic names by where they sit and
  their shapes: inside an attention module (a path segment with ``attn`` or ``attention``)
  ``query``/``key``/``value`` (or a fused ``qkv``) by their leaf name, ``attention_output`` for the
  one that returns to the hidden size; elsewhere ``gate`` by name, ``intermediate`` for the one
  that leaves the hidden size (a fused gate-and-up projection included) and ``output`` for the one
  that returns to it. A projection that cannot be named keeps its path in the block as its name.
- **Norms**: modules whose class name holds ``Norm`` and that have a weight.
- **Head**: for classification, the top-level modules outside the base model (``classifier``,
  ``score``, DeBERTa's ``pooler``, ModernBERT's ``head``), all trained; a causal LM trains no head.

Reading the tree needs torch and transformers (their import takes seconds; docs/families.md has
the figures), so results are cached on disk under ``$PARETUNE_CACHE/dims`` (default
``~/.cache/paretune/dims``), keyed by the config, the task and the transformers version: the CLI and
the driver import torch only the first time they meet a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .architectures import ModelDims, TargetShape, position_limit
from .errors import ModelError
from .models import cache_root

CACHE_VERSION = 2
TASKS = ("classification", "causal_lm")

ATTENTION = re.compile(r"attn|attention", re.IGNORECASE)
FUSED_QKV = re.compile(r"qkv|query_key_value|c_attn", re.IGNORECASE)
QUERY = {"query", "q_proj", "q_lin", "query_proj", "q", "wq"}
KEY = {"key", "k_proj", "k_lin", "key_proj", "k", "wk"}
VALUE = {"value", "v_proj", "v_lin", "value_proj", "v", "wv"}
# names that mark a block's output projection where several projections fit by shape
OUTPUT_NAMES = re.compile(r"(^|\.)(o_proj|out_proj|out_lin|output\.dense|dense|c_proj|wo)$", re.I)

# Where the frozen-prefix shortcut may replace the module that feeds block 0 with cached features:
# architectures whose model forward adds nothing between that module and the first block (Gemma
# scales the embeddings there, GPT-2 adds positions), checked against the full forward in tests.
PREFIX_EMBEDDINGS = {
    "bert": "{base}.embeddings",
    "roberta": "{base}.embeddings",
    "llama": "model.embed_tokens",
    "mistral": "model.embed_tokens",
    "qwen2": "model.embed_tokens",
}
# the family name that other code keys shortcuts on (first-token pooling: "bert")
ARCH_OF = {
    "bert": "bert",
    "roberta": "bert",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
}


def _reader_digest() -> str:
    """This module's own source: a change to how trees are read invalidates cached results."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    except OSError:
        return str(CACHE_VERSION)


def _cache_file(cfg: dict[str, Any], num_labels: int, task: str) -> Path:
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        version = "none"
    key = json.dumps(
        [
            CACHE_VERSION,
            _reader_digest(),
            version,
            task,
            num_labels if task == "classification" else 0,
            cfg,
        ],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_root() / "dims" / f"{digest}.json"


def _from_json(data: dict[str, Any]) -> ModelDims:
    data = dict(data)
    data["targets"] = {k: TargetShape(**v) for k, v in data["targets"].items()}
    return ModelDims(**data)


def _to_cache(path: Path, dims: ModelDims) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(dims)))
        tmp.replace(path)
    except OSError:  # a read-only home is no reason to fail: the next call reads the tree again
        pass


def dims_from_config(
    cfg: dict[str, Any], num_labels: int = 2, task: str = "classification"
) -> ModelDims:
    """ModelDims for a config dict, read off its module tree (cached on disk)."""
    return read_dims(cfg, num_labels, task)


def read_dims(cfg: dict[str, Any], num_labels: int = 2, task: str = "classification") -> ModelDims:
    """The model's :class:`ModelDims`, from the disk cache or its module tree."""
    if task not in TASKS:
        raise ModelError(f"unknown task type {task!r}; allowed: {', '.join(TASKS)}")
    path = _cache_file(cfg, num_labels, task)
    try:
        return _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    dims = dims_from_tree(build_meta_model(cfg, num_labels, task), cfg, num_labels, task)
    _to_cache(path, dims)
    return dims


def build_meta_model(
    cfg: dict[str, Any], num_labels: int, task: str, *, trust_remote_code: bool = False
) -> Any:
    """The model ``task`` trains, built on the meta device from ``cfg`` (no weights)."""
    import torch  # noqa: PLC0415 - only where a tree is read, never at import
    from transformers import (  # noqa: PLC0415
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    hf_logging.set_verbosity_error()
    cfg = {k: v for k, v in cfg.items() if k not in ("num_labels", "id2label", "label2id")}
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ModelError("the model's config.json has no model_type")
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    try:
        config = AutoConfig.for_model(model_type, **cfg)
        if task == "classification":
            config.num_labels = num_labels
        with torch.device("meta"):
            return auto.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as e:  # unknown model types, configs transformers refuses
        what = "a causal LM" if task == "causal_lm" else "a sequence classifier"
        raise ModelError(
            f"cannot build model_type={model_type!r} as {what} from its config: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e


def _projection(module: Any) -> TargetShape | None:
    """The shape of a linear projection (``nn.Linear`` or GPT-2's transposed ``Conv1D``)."""
    name = type(module).__name__
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2 or name not in ("Linear", "Conv1D"):
        return None
    bias = getattr(module, "bias", None) is not None
    if name == "Conv1D":
        return TargetShape("", int(weight.shape[0]), int(weight.shape[1]), bias, "conv1d")
    return TargetShape("", int(weight.shape[1]), int(weight.shape[0]), bias)


def _block_parts(block: Any) -> tuple[dict[str, TargetShape], dict[str, tuple[int, bool]]]:
    """A block's projections (path -> shape) and norms (path -> (width, has bias))."""
    projections: dict[str, TargetShape] = {}
    norms: dict[str, tuple[int, bool]] = {}
    for path, module in block.named_modules():
        if not path:
            continue
        shape = _projection(module)
        if shape is not None:
            projections[path] = replace(shape, path=path)
            continue
        weight = getattr(module, "weight", None)
        if "norm" in type(module).__name__.lower() and weight is not None and weight.dim() == 1:
            norms[path] = (int(weight.numel()), getattr(module, "bias", None) is not None)
    return projections, norms


def _generic_name(path: str, shape: TargetShape, hidden: int) -> str | None:
    leaf = path.rsplit(".", 1)[-1]
    low = leaf.lower()
    if ATTENTION.search(path):
        if FUSED_QKV.search(leaf):
            return "qkv"
        for generic, names in (("query", QUERY), ("key", KEY), ("value", VALUE)):
            if low in names:
                return generic
        return "attention_output" if shape.out_features == hidden else None
    if "gate" in low and "up" not in low:
        return "gate"
    if shape.in_features == hidden and shape.out_features != hidden:
        return "intermediate"
    if shape.out_features == hidden and shape.in_features != hidden:
        return "output"
    return None


def _name_targets(
    projections: dict[str, TargetShape], hidden: int
) -> tuple[dict[str, TargetShape], dict[str, str]]:
    """Generic names where one projection fits each (where several do, the one whose name says
    it, such as ``o_proj`` or ``output.dense``); the rest keep their paths. Returns the targets
    and ``aliases``: real path -> generic name."""
    named: dict[str, list[str]] = {}
    for path, shape in projections.items():
        generic = _generic_name(path, shape, hidden)
        if generic is not None:
            named.setdefault(generic, []).append(path)
    taken: dict[str, str] = {}
    for generic, paths in named.items():
        if len(paths) > 1:
            paths = [p for p in paths if OUTPUT_NAMES.search(p)]
        if len(paths) == 1:
            taken[paths[0]] = generic
    targets: dict[str, TargetShape] = {}
    aliases: dict[str, str] = {}
    for path, shape in projections.items():
        name = taken.get(path, path)
        targets[name] = shape
        if name != path:
            aliases[path] = name
    order = ["query", "key", "value", "qkv", "attention_output", "gate", "intermediate", "output"]
    ordered = {t: targets[t] for t in order if t in targets}
    ordered.update({t: s for t, s in targets.items() if t not in ordered})
    return ordered, aliases


def _config_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def dims_from_tree(model: Any, cfg: dict[str, Any], num_labels: int, task: str) -> ModelDims:
    """Read :class:`ModelDims` off ``model`` (built from ``cfg``, on any device)."""
    from torch import nn  # noqa: PLC0415

    model_type = str(cfg.get("model_type"))
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    lists = [(name, m) for name, m in lists if len(m) > 0 and any(_block_parts(m[0])[0])]
    if not lists:
        raise ModelError(f"{model_type}: no list of transformer blocks found in the model")
    block_path, blocks = max(lists, key=lambda item: len(item[1]))
    config = model.config
    hidden = _config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    if hidden is None:
        raise ModelError(f"{model_type}: the config names no hidden size")
    parts = [_block_parts(b) for b in blocks]
    first_proj, first_norms = parts[0]
    projections = {
        p: s for p, s in first_proj.items() if all(other[0].get(p) == s for other in parts[1:])
    }
    norms = {
        p: n for p, n in first_norms.items() if all(other[1].get(p) == n for other in parts[1:])
    }
    targets, aliases = _name_targets(projections, hidden)
    n_heads = _config_int(config, "num_attention_heads", "n_head", "n_heads") or 1
    n_kv = _config_int(config, "num_key_value_heads", "multi_query_group_num") or n_heads
    head_dim = _config_int(config, "head_dim") or hidden // n_heads
    intermediate = (
        targets["output"].in_features
        if "output" in targets
        else _config_int(config, "intermediate_size", "n_inner", "hidden_dim") or 4 * hidden
    )
    base_prefix = getattr(model, "base_model_prefix", "")
    head: dict[str, int] = {}
    if task == "classification":
        for name, child in model.named_children():
            count = sum(p.numel() for p in child.parameters())
            if name != base_prefix and count:
                head[name] = int(count)
    template = PREFIX_EMBEDDINGS.get(model_type)
    base = getattr(model, base_prefix, model)
    return ModelDims(
        arch=ARCH_OF.get(model_type, model_type),
        model_type=model_type,
        n_layers=len(blocks),
        hidden=hidden,
        intermediate=intermediate,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        vocab_size=_config_int(config, "vocab_size") or 0,
        num_labels=num_labels if task == "classification" else 0,
        block_path=block_path,
        targets=targets,
        head=head,
        norm_bias=bool(norms) and all(has_bias for _, has_bias in norms.values()),
        norms_per_block={p: width for p, (width, _) in norms.items()},
        embeddings=template.format(base=base_prefix) if template else None,
        max_positions=position_limit(cfg),
        task=task,
        aliases=aliases,
        takes_past_key_values=_takes(model, "past_key_values") or _takes(base, "past_key_values"),
    )


def _takes(module: Any, argument: str) -> bool:
    import inspect  # noqa: PLC0415

    return argument in inspect.signature(module.forward).parameters


__all__ = [
    "TASKS",
    "build_meta_model",
    "dims_from_config",
    "dims_from_tree",
    "read_dims",
]
