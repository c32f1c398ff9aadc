"""Supervised fine-tuning (task.type: causal_lm): data, completion-only labels, metrics, trials."""

from __future__ import annotations

import copy
import json
import math

import optuna
import pytest
import torch
from torch import nn
from transformers import AutoTokenizer

from paretune.spaces import DataError, SpecError, dims_from_config, parse_spec, resolve_model
from paretune.spaces.models import minilm_dir
from paretune.spaces.space import sample_config
from paretune.trainers.run import train_trial
from paretune.trainers.sft import evaluate_sft, exact_match, normalise
from paretune.trainers.sft_data import (
    IGNORE,
    SftSplit,
    load_examples,
    prepare_sft_data,
    tokenize_examples,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="module")
def chat_tokenizer(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def task(tmp_path, records, **extra):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in extra.items())
    text = f"study: s\ntask: {{type: causal_lm, dataset: {path}, val_size: 1, test_size: 0"
    return parse_spec(text + (f", {fields}" if fields else "") + "}\n").spec.task


def test_prompt_tokens_get_minus_100_and_completion_tokens_their_ids(tmp_path, tokenizer):
    spec_task = task(tmp_path, [{"prompt": "Is water wet? Answer:", "completion": "yes"}] * 2)
    split, cut = tokenize_examples(load_examples(spec_task), tokenizer, 64, False)
    prompt = tokenizer("Is water wet? Answer:")["input_ids"][:-1]  # [CLS] ... without [SEP]
    answer = tokenizer("yes", add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert cut == 0
    assert split.input_ids[0] == prompt + answer
    assert split.labels[0] == [IGNORE] * len(prompt) + answer
    assert split.prompt_lengths[0] == len(prompt)
    trained, _ = tokenize_examples(load_examples(spec_task), tokenizer, 64, True)
    assert trained.labels[0] == prompt + answer  # train_on_prompt


def test_chat_messages_are_rendered_with_the_template_and_only_the_answer_is_labelled(
    tmp_path, chat_tokenizer
):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is water wet?"},
        {"role": "assistant", "content": "yes"},
    ]
    spec_task = task(tmp_path, [{"messages": messages}] * 2)
    split, _ = tokenize_examples(load_examples(spec_task), chat_tokenizer, 64, False)
    before = "<system> Be brief. [SEP] <user> Is water wet? [SEP] <assistant> "
    prompt = chat_tokenizer(before, add_special_tokens=False)["input_ids"]
    answer = chat_tokenizer("yes [SEP] ", add_special_tokens=False)["input_ids"]
    assert split.input_ids[0] == prompt + answer
    for position, (token, label) in enumerate(
        zip(split.input_ids[0], split.labels[0], strict=True)
    ):
        assert label == (IGNORE if position < len(prompt) else token)
    assert chat_tokenizer.decode([t for t in split.labels[0] if t != IGNORE]) == "yes [SEP]"


def test_long_examples_lose_the_start_of_their_prompt_and_keep_the_completion(tmp_path, tokenizer):
    long_prompt = " ".join(["word"] * 50) + " question?"
    spec_task = task(tmp_path, [{"prompt": long_prompt, "completion": "the answer"}] * 3)
    split, cut = tokenize_examples(load_examples(spec_task), tokenizer, 16, False)
    answer = tokenizer("the answer", add_special_tokens=False)["input_ids"]
    assert cut == 3
    assert len(split.input_ids[0]) == 16
    assert split.input_ids[0][-len(answer) - 1 : -1] == answer
    assert tokenizer.decode(split.input_ids[0][: split.prompt_lengths[0]]).endswith("question?")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"prompt": "a"}], "line 1 of .* has no field 'completion' \\(nor 'messages'\\)"),
        ([{"prompt": "a", "completion": "  "}], "line 1 of .*: 'completion' is empty"),
        ([{"prompt": "a", "completion": 3}], "'completion' must be a string"),
        (
            [{"messages": [{"role": "user", "content": "hi"}]}],
            "the last turn of 'messages' is 'user'; it must be the assistant's answer",
        ),
        ([{"messages": [{"content": "hi"}]}], "turn 1 of 'messages' has no role"),
    ],
)
def test_bad_records_fail_with_one_line(tmp_path, records, message):
    with pytest.raises(DataError, match=message) as info:
        load_examples(task(tmp_path, records))
    assert "\n" not in str(info.value)


def test_chat_data_needs_a_chat_template(tmp_path, tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    spec_task = task(tmp_path, [{"messages": messages}] * 2)
    with pytest.raises(DataError, match="chat messages but the tokenizer has no chat template"):
        tokenize_examples(load_examples(spec_task), tokenizer, 64, False)


def test_field_names_are_configurable(tmp_path, tokenizer):
    spec_task = task(
        tmp_path,
        [{"q": "two plus two?", "a": "four"}] * 2,
        prompt_field="q",
        completion_field="a",
    )
    assert [e.completion for e in load_examples(spec_task)] == ["four", "four"]


def test_the_builtin_sft_set_asks_about_every_vader_snippet(tokenizer):
    spec = parse_spec("study: s\ntask: {type: causal_lm, dataset: vader-sft, max_length: 64}\n")
    examples = load_examples(spec.spec.task)
    assert len(examples) > 20_000
    assert {e.completion for e in examples} == {"positive", "negative"}
    assert examples[0].prompt.endswith("positive or negative? Answer with one word.")
    data = prepare_sft_data(spec.spec.task, tokenizer, "minilm")
    assert len(data.train) + len(data.validation) + len(data.test) == len(examples)
    assert 0 < data.truncated < len(examples) // 10


class Counting(nn.Module):
    """A 'language model' whose next token is always the last one plus one (mod V)."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        nxt = (input_ids + 1) % self.vocab
        logits = torch.nn.functional.one_hot(nxt, self.vocab).float() * 10.0

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_exact_match_scores_a_model_that_answers_right_and_wrong():
    stop = 49
    # prompts end in 10 and 20; the counting model answers 11 12 and 21 22 (then 23 24, ...)
    data = SftSplit(
        input_ids=[[5, 10, 11, 12, stop], [7, 20, 30, 31, stop], [3, 4, 10, 11, 12, stop]],
        labels=[[IGNORE, IGNORE, 11, 12, stop], [IGNORE, IGNORE, 30, 31, stop],
                [IGNORE, IGNORE, IGNORE, 11, 12, stop]],
        prompt_lengths=[2, 2, 3],
    )  # fmt: skip
    metrics = evaluate_sft(
        Counting(),
        data,
        pad_id=0,
        device=torch.device("cpu"),
        decode=lambda ids: " ".join(map(str, ids)),
        stop_id=stop,
        generate_examples=3,
        max_new_tokens=2,
        batch_size=2,
    )
    # the first answer is right, the second wrong, the third is the first one padded on the left
    assert metrics["exact_match"] == pytest.approx(2 / 3)
    # completion tokens: 11 12 | 30 31 | 11 12 predicted right (stop never: after 12 comes 13)
    assert metrics["token_accuracy"] == pytest.approx((2 + 1 + 2) / 9)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))


def test_normalising_ignores_case_and_spacing_only():
    assert normalise("  Positive \n") == "positive"
    assert exact_match(["Positive.", " NEGATIVE"], ["positive", "negative"]) == 0.5


def test_objectives_must_fit_the_task_type():
    spec = parse_spec("study: s\ntask: {type: causal_lm}\n").spec
    assert spec.objective_names == ["eval_loss", "trainable_params"]
    with pytest.raises(SpecError, match="objective accuracy does not apply to task type causal_lm"):
        parse_spec("study: s\ntask: {type: causal_lm}\nobjectives: [accuracy]\n")
    with pytest.raises(SpecError, match="objective exact_match does not apply to task type classi"):
        parse_spec("study: s\nobjectives: [exact_match]\n")


def test_a_tiny_decoder_learns_to_answer(tmp_path):
    spec = parse_spec(
        "study: s\nmodel: tiny-llama\n"
        "task: {type: causal_lm, dataset: synthetic, synthetic_size: 300, max_length: 32,"
        " val_size: 32, test_size: 16, generate_examples: 16}\n"
        "objectives: [exact_match, trainable_params]\n"
        "space:\n  lora: {targets: [q, v], ranks: [8], mode: all}\n  learning_rate: 1.0e-2\n"
    ).spec
    dims = dims_from_config(resolve_model("tiny-llama").config, 0, "causal_lm")
    config = sample_config(optuna.create_study().ask(), spec, dims)
    seen: dict[int, dict[str, float]] = {}
    metrics = train_trial(
        spec, config, lambda s, m: seen.setdefault(s, m) is not None, max_steps=200,
        eval_steps=[20], trial_dir=tmp_path / "t", test_split=True,
    )  # fmt: skip
    assert seen[20]["exact_match"] < 0.5 < metrics["exact_match"]
    assert metrics["trainable_params"] == 4 * 2 * 8 * (64 + 64) - 4 * 8 * (64 - 32)
    assert {"eval_loss", "perplexity", "token_accuracy", "test_exact_match"} <= set(metrics)
    assert (tmp_path / "t" / "adapter" / "adapter_config.json").exists()


def test_a_plan_that_trains_nothing_scores_the_base_model(tmp_path):
    spec = parse_spec(
        "study: s\nmodel: tiny-llama\n"
        "task: {type: causal_lm, dataset: synthetic, synthetic_size: 100, max_length: 32,"
        " val_size: 16, test_size: 0, generate_examples: 4}\n"
        "space:\n  lora: {targets: [q], ranks: [0, 4]}\n"
    ).spec
    dims = dims_from_config(resolve_model("tiny-llama").config, 0, "causal_lm")
    config = sample_config(
        optuna.trial.FixedTrial(
            {**{f"lora.rank.L{i}.query": 0 for i in range(4)}, "learning_rate": 1e-3}
        ),
        spec,
        dims,
    )
    first = train_trial(spec, config, lambda s, m: True, max_steps=2)
    again = train_trial(spec, config, lambda s, m: True, max_steps=6)
    assert first["trainable_params"] == 0
    assert first["eval_loss"] == again["eval_loss"]  # nothing moved


def test_validate_describes_a_causal_lm_study(tmp_path):
    from typer.testing import CliRunner

    from paretune.search.cli.app import app

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "study: s\nmodel: tiny-llama\ntask: {type: causal_lm, dataset: synthetic}\n"
        "space:\n  lora: {targets: [q, v], ranks: [0, 8]}\n"
    )
    res = CliRunner().invoke(app, ["validate", str(spec)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "synthetic (causal_lm: prompt -> completion, max_length 128)" in text
    assert "eval_loss (minimize), trainable_params (minimize)" in text
    assert "0 .. 7,168 (the LM head stays frozen)" in text
