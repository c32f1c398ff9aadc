"""Supervised fine-tuning data: prompt/completion pairs or chat messages, tokenised with the
completion's tokens as the only labels.

Sources, chosen by ``task.dataset`` (``task.type: causal_lm``):

- ``vader-sft``: the four VADER ground-truth files (:mod:`paretune.trainers.datasets_vader`) as
  instruction -> answer pairs: ``"<snippet>\\n\\nIs this <movie review | tweet | product review |
  editorial snippet> positive or negative? Answer with one word."`` -> ``"positive"`` or
  ``"negative"``; ``vader-movies`` (and the other three) give one file's pairs;
- ``synthetic``: the synthetic classification set (:mod:`paretune.trainers.synthetic`) as
  "which topic?" pairs, for tests;
- a ``.jsonl``/``.json``/``.csv`` file with ``task.prompt_field`` and ``task.completion_field``
  (default ``prompt``, ``completion``), or with ``task.messages_field`` (``messages``: a list of
  ``{role, content}``, the last one the assistant's answer), rendered with the tokenizer's chat
  template. Plain pairs are rendered with the chat template too (the prompt as the user's turn)
when the tokenizer has one, unless ``task.chat_template: false``.

Tokens: prompt then completion, then the end-of-sequence token after a plain completion (a chat
template closes the turn itself). ``labels`` are the ids with the prompt's tokens set to -100
(``train_on_prompt`` keeps them). An example longer than ``max_length`` loses tokens from the
start of its prompt, never from its completion (the question sits at the prompt's end in the
built-in set and right before the answer in a chat template); how many were cut is logged and
kept in :attr:`SftSplits.truncated`. The instruction is put after the snippet for that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretune.spaces.errors import DataError
from paretune.spaces.spec import TaskSpec

from . import synthetic
from .data import (
    DataSplits,
    LabelledTexts,
    _csv_records,
    _digest,
    _json_records,
    _resolve_cache,
    split_dataset,
)
from .datasets_vader import LABEL_NAMES as VADER_LABELS
from .datasets_vader import VADER_FILES, load_vader

log = logging.getLogger(__name__)

IGNORE = -100  # the label PyTorch's cross-entropy skips
SFT_VERSION = 1
VADER_KINDS = {
    "vader-movies": "movie review",
    "vader-tweets": "tweet",
    "vader-amazon": "product review",
    "vader-nyt": "editorial snippet",
}
QUESTION = "Is this {kind} positive or negative? Answer with one word."
BUILTIN_SFT = ("vader-sft", *VADER_FILES, "synthetic")
BATCH = 1024


@dataclass(frozen=True)
class Example:
    """One SFT example: a plain ``prompt`` or chat ``messages`` before the answer, and the answer."""

    prompt: str | tuple[tuple[str, str], ...]  # text, or (role, content) turns
    completion: str


@dataclass(frozen=True)
class SftSplit:
    """One split tokenised: ``labels`` align with ``input_ids`` (-100 where no loss is taken);
    ``prompt_lengths`` say where each completion starts (what follows is the reference answer)."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    prompt_lengths: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class SftSplits:
    train: SftSplit
    validation: SftSplit
    test: SftSplit
    key: str
    truncated: int  # examples whose prompt lost tokens to max_length
    num_labels: int = 0  # no classification head


# ----------------------------------------------------------------------------- loading


def load_examples(task: TaskSpec, cache_dir: str | Path | None = None) -> list[Example]:
    """The task's examples, checked: every one has a prompt and a non-empty completion."""
    name = task.dataset
    if name == "vader-sft":
        examples = [e for n in VADER_FILES for e in _vader_pairs(n, cache_dir)]
    elif name in VADER_FILES:
        examples = _vader_pairs(name, cache_dir)
    elif name == "synthetic":
        texts, labels = synthetic.generate(task.synthetic_size, task.num_labels or 2, task.seed)
        examples = [
            Example(f"{t}\n\nWhich topic is this? Answer with one word.", f"class_{y}")
            for t, y in zip(texts, labels, strict=True)
        ]
    elif name.lower().endswith((".csv", ".jsonl", ".json")):
        examples = list(_file_examples(Path(name).expanduser(), task))
    else:
        raise DataError(
            f"unknown data set {name!r} for task type causal_lm; use {', '.join(BUILTIN_SFT)}, "
            "or a path to a .jsonl/.csv file with prompt and completion (or messages) fields"
        )
    if not examples:
        raise DataError(f"data set {name!r} has no examples")
    return examples


def _vader_pairs(name: str, cache_dir: str | Path | None) -> list[Example]:
    texts, labels = load_vader(name, _resolve_cache(cache_dir))
    question = QUESTION.format(kind=VADER_KINDS[name])
    return [
        Example(f"{text}\n\n{question}", VADER_LABELS[label])
        for text, label in zip(texts, labels, strict=True)
    ]


def _records(path: Path, task: TaskSpec) -> Iterator[tuple[str, Any]]:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_records(path, task.prompt_field, task.completion_field)
        else:
            yield from _json_records(path)
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read {path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None


def _file_examples(path: Path, task: TaskSpec) -> Iterator[Example]:
    for where, record in _records(path, task):
        if not isinstance(record, dict):
            raise DataError(f"{where} of {path} is not a JSON object")
        if task.messages_field in record:
            yield _chat_example(record[task.messages_field], where, path, task.messages_field)
            continue
        fields = (task.prompt_field, task.completion_field)
        missing = [f for f in fields if f not in record]
        if missing:
            raise DataError(
                f"{where} of {path} has no field {missing[0]!r} (nor {task.messages_field!r}); "
                f"its fields are: {', '.join(map(str, record)) or '(none)'}; set "
                "task.prompt_field / task.completion_field / task.messages_field"
            )
        prompt, completion = record[task.prompt_field], record[task.completion_field]
        for field, value in zip(fields, (prompt, completion), strict=True):
            if not isinstance(value, str):
                raise DataError(f"{where} of {path}: {field!r} must be a string, got {value!r}")
        if not completion.strip():
            raise DataError(f"{where} of {path}: {task.completion_field!r} is empty")
        yield Example(prompt, completion)


def _chat_example(messages: Any, where: str, path: Path, field: str) -> Example:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where} of {path}: {field!r} must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(messages):
        if not (isinstance(turn, dict) and isinstance(turn.get("role"), str)):
            raise DataError(f"{where} of {path}: turn {i + 1} of {field!r} has no role")
        if not isinstance(turn.get("content"), str):
            raise DataError(f"{where} of {path}: turn {i + 1} of {field!r} has no text content")
        turns.append((turn["role"], turn["content"]))
    role, answer = turns[-1]
    if role != "assistant":
        raise DataError(
            f"{where} of {path}: the last turn of {field!r} is {role!r}; it must be the "
            "assistant's answer that the model learns"
        )
    if not answer.strip():
        raise DataError(f"{where} of {path}: the assistant's answer is empty")
    return Example(tuple(turns[:-1]), answer)


# ----------------------------------------------------------------------------- tokenising


def encode(example: Example, tokenizer: Any) -> tuple[list[int], list[int]]:
    """The prompt's and the completion's token ids, as the model sees them in sequence."""
    if isinstance(example.prompt, str):
        return _encode_plain([example], tokenizer)[0]
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the data holds chat messages but the tokenizer has no chat template; give "
            "prompt/completion fields instead, or use a model whose tokenizer has one"
        )
    history = [{"role": r, "content": c} for r, c in example.prompt]
    answer = {"role": "assistant", "content": example.completion}
    before = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*history, answer], tokenize=False)
    if not full.startswith(before):
        raise DataError(
            "the tokenizer's chat template renders the conversation differently with and "
            "without the answer, so the answer's tokens cannot be told apart"
        )
    prompt = tokenizer(before, add_special_tokens=False)["input_ids"]
    completion = tokenizer(full[len(before) :], add_special_tokens=False)["input_ids"]
    return list(prompt), list(completion)


def _encode_plain(examples: Sequence[Example], tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """Plain prompt/completion pairs, one tokenizer call per :data:`BATCH` of them: the
    prompt with the tokenizer's special tokens (less a closing separator: BERT-style tokenizers
    close every text, and the answer follows here), the completion, then the end-of-text."""
    eos, sep = end_of_text(tokenizer), tokenizer.sep_token_id
    out: list[tuple[list[int], list[int]]] = []
    for start in range(0, len(examples), BATCH):
        chunk = examples[start : start + BATCH]
        prompts = tokenizer([e.prompt for e in chunk], add_special_tokens=True)["input_ids"]
        answers = tokenizer([e.completion for e in chunk], add_special_tokens=False)["input_ids"]
        for p, c in zip(prompts, answers, strict=True):
            p = list(p[:-1] if sep is not None and p and p[-1] == sep else p)
            out.append((p, [*c, eos] if eos is not None else list(c)))
    return out


def end_of_text(tokenizer: Any) -> int | None:
    """The token a completion ends with (and generation stops at)."""
    for token_id in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def as_chat(example: Example) -> Example:
    """A plain prompt as the user's turn of a conversation."""
    if isinstance(example.prompt, str):
        return Example((("user", example.prompt),), example.completion)
    return example


def _encode_all(examples: Sequence[Example], tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """:func:`encode` of every example, the plain ones in batches."""
    out: list[tuple[list[int], list[int]] | None] = [None] * len(examples)
    plain = [i for i, e in enumerate(examples) if isinstance(e.prompt, str)]
    for i, e in enumerate(examples):
        if not isinstance(e.prompt, str):
            out[i] = encode(e, tokenizer)
    for i, pair in zip(plain, _encode_plain([examples[i] for i in plain], tokenizer), strict=True):
        out[i] = pair
    return out  # type: ignore[return-value]


def uses_chat_template(task: TaskSpec, tokenizer: Any) -> bool:
    """Whether plain prompt/completion pairs go through the chat template (``task.chat_template``;
    by default when the tokenizer has one: an instruct model answers in its own format)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if task.chat_template and not has:
        raise DataError("task.chat_template is true but the tokenizer has no chat template")
    return has if task.chat_template is None else bool(task.chat_template)


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    train_on_prompt: bool,
    chat: bool = False,
) -> tuple[SftSplit, int]:
    """One split's ids and labels, and how many examples were truncated; ``chat``: plain pairs
    are rendered as a conversation (:func:`as_chat`)."""
    if chat:
        examples = [as_chat(e) for e in examples]
    ids, labels, starts, cut = [], [], [], 0
    for prompt, completion in _encode_all(examples, tokenizer):
        if len(prompt) + len(completion) > max_length:
            cut += 1
            completion = completion[: max_length - 1]
            prompt = prompt[len(prompt) - (max_length - len(completion)) :]
        ids.append(prompt + completion)
        labels.append((prompt if train_on_prompt else [IGNORE] * len(prompt)) + completion)
        starts.append(len(prompt))
    return SftSplit(ids, labels, starts), cut


def split_examples(
    examples: Sequence[Example], task: TaskSpec
) -> tuple[dict[str, list[Example]], str]:
    """The train, validation and test examples, split as classification data is (seeded; test,
    then validation, then train capped by ``train_size``), and the splits' content key."""
    texts = tuple(str(i) for i in range(len(examples)))
    content = _digest([[e.prompt, e.completion] for e in examples])
    index = LabelledTexts(texts, (0,) * len(examples), ("-",), f"sft:{content}")
    splits: DataSplits = split_dataset(index, task)
    chosen = {
        name: [examples[int(i)] for i in getattr(splits, name).texts]
        for name in ("train", "validation", "test")
    }
    return chosen, splits.key


def prepare_sft_data(
    task: TaskSpec, tokenizer: Any, tokenizer_key: str, cache_dir: str | Path | None = None
) -> SftSplits:
    """Load, split (as classification data is split: seeded, test then validation then train)
    and tokenise the task's SFT examples."""
    examples = load_examples(task, cache_dir)
    chosen_by_split, splits_key = split_examples(examples, task)
    out, cut = {}, 0
    chat = uses_chat_template(task, tokenizer)
    for name, chosen in chosen_by_split.items():
        out[name], n = tokenize_examples(
            chosen, tokenizer, task.max_length, task.train_on_prompt, chat
        )
        cut += n
    if cut:
        log.warning(
            "%d of %d examples are longer than task.max_length %d: their prompts were cut from "
            "the start, their completions kept",
            cut,
            len(examples),
            task.max_length,
        )
    key = _digest([SFT_VERSION, tokenizer_key, task.model_dump_json(), splits_key])
    return SftSplits(**out, key=key, truncated=cut)


__all__ = [
    "BUILTIN_SFT",
    "IGNORE",
    "Example",
    "SftSplit",
    "SftSplits",
    "encode",
    "end_of_text",
    "load_examples",
    "prepare_sft_data",
    "split_examples",
    "tokenize_examples",
]
