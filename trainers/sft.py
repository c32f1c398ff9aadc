"""Supervised fine-tuning: batches, the completion-only loss, and the SFT metrics.

- **Batches** are padded to their own longest sequence (rounded up to ``pad_to_multiple_of``),
  labels with -100; the training order groups similar lengths (``loop.BatchStream``).
- **Loss**: next-token cross-entropy on the positions whose label is not -100 (the completion's
  tokens, ``sft_data``). Only the rows of the hidden states that predict such a token go through
  the LM head (``logits_to_keep`` where the model takes it): with a 49k-token vocabulary the head
  is a large part of a small model's work, and the positions it skips carry no loss, so the loss
  and its gradients are the same as over the whole sequence.
- **Metrics**: ``eval_loss`` (mean over completion tokens), ``perplexity`` (its exp),
  ``token_accuracy`` (completion tokens whose greedy prediction is right), and ``exact_match``:
  the first ``task.generate_examples`` validation prompts answered greedily (batched, left
  padding with explicit positions, so a padded prompt is computed as it would be alone), decoded
  and compared to the reference completion's tokens, decoded the same way, after
  :func:`normalise` (whitespace collapsed, case folded).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .injectors.placement import hf_model
from .loop import TaskSteps, autocast, padded_ids
from .sft_data import IGNORE, SftSplit

PERPLEXITY_CAP = 50.0  # exp(50) ~ 5e21: a diverged model reports a large, finite perplexity


def normalise(text: str) -> str:
    """What ``exact_match`` compares: the text stripped, inner whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The fraction of predictions equal to their reference after :func:`normalise`."""
    if not references:
        return 0.0
    hits = sum(normalise(p) == normalise(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(references)


def collate_sft(
    data: SftSplit,
    idx: Sequence[int],
    pad_id: int,
    device: torch.device,
    *,
    multiple: int = 1,
    max_width: int | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 on padding) of the examples ``idx``."""
    ids, mask = padded_ids(
        [data.input_ids[i] for i in idx], pad_id, multiple=multiple, max_width=max_width
    )
    labels, _ = padded_ids(
        [data.labels[i] for i in idx], IGNORE, multiple=multiple, max_width=max_width
    )
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether the model's forward can limit the LM head to some positions (asked on every
    step and every generated token, so answered once per model class)."""
    return _forward_takes(type(hf_model(model)), "logits_to_keep")


@functools.lru_cache(maxsize=64)
def _forward_takes(cls: type, argument: str) -> bool:
    return argument in inspect.signature(cls.forward).parameters


def completion_logits(
    model: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the positions that predict a labelled token, and those tokens' ids (-100 where
    a kept position predicts nothing in its row)."""
    targets = batch["labels"][:, 1:]
    kwargs: dict[str, Any] = {}
    if takes_logits_to_keep(model):
        keep = (targets != IGNORE).any(0).nonzero().flatten()
        kwargs["logits_to_keep"] = keep
        targets = targets[:, keep]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
    logits = out.logits if kwargs else out.logits[:, :-1]
    return logits, targets


def completion_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], precision: Any, device: torch.device
) -> torch.Tensor:
    """Mean next-token cross-entropy over the batch's labelled tokens."""
    with autocast(precision, device):
        logits, targets = completion_logits(model, batch)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def greedy_answers(
    model: nn.Module,
    data: SftSplit,
    idx: Sequence[int],
    *,
    pad_id: int,
    stop_id: int | None,
    max_new_tokens: int,
    device: torch.device,
    precision: Any = None,
) -> list[list[int]]:
    """Greedy continuations of the prompts of ``idx`` (each up to its stop token, excluded)."""
    prompts = [data.input_ids[i][: data.prompt_lengths[i]] for i in idx]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    kwargs: dict[str, Any] = {"logits_to_keep": 1} if takes_logits_to_keep(model) else {}
    answers: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with autocast(precision, device):
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        nxt = out.logits[:, -1].float().argmax(-1)
        for row in (~done).nonzero().flatten().tolist():
            token = int(nxt[row])
            if token == stop_id:
                done[row] = True
            else:
                answers[row].append(token)
        if bool(done.all()):
            break
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        ids = torch.cat([ids, nxt[:, None]], 1)
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
    return answers


def evaluate_sft(
    model: nn.Module,
    data: SftSplit,
    *,
    pad_id: int,
    device: torch.device,
    decode: Callable[[list[int]], str],
    stop_id: int | None,
    generate_examples: int = 64,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    precision: Any = None,
    pad_to_multiple_of: int = 1,
) -> dict[str, float]:
    """eval_loss, perplexity, token_accuracy over every example; exact_match over the first
    ``generate_examples`` (left out at 0)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    longest = len(data.input_ids[order[-1]]) if order else 0
    loss_sum, tokens, right = 0.0, 0, 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate_sft(
                data, idx, pad_id, device, multiple=pad_to_multiple_of, max_width=longest
            )
            with autocast(precision, device):
                logits, targets = completion_logits(model, batch)
            logits, flat = logits.float().flatten(0, 1), targets.flatten()
            loss_sum += float(F.cross_entropy(logits, flat, ignore_index=IGNORE, reduction="sum"))
            scored = flat != IGNORE
            tokens += int(scored.sum())
            right += int((logits.argmax(-1)[scored] == flat[scored]).sum())
        eval_loss = loss_sum / max(tokens, 1)
        metrics: dict[str, float] = {
            "eval_loss": eval_loss,
            "perplexity": math.exp(min(eval_loss, PERPLEXITY_CAP)),
            "token_accuracy": right / max(tokens, 1),
        }
        chosen = list(range(min(generate_examples, len(data))))
        if chosen:
            answer_tokens = max(len(data.input_ids[i]) - data.prompt_lengths[i] for i in chosen)
            predictions: list[str] = []
            for start in range(0, len(chosen), batch_size):
                part = chosen[start : start + batch_size]
                for tokens_out in greedy_answers(
                    model,
                    data,
                    part,
                    pad_id=pad_id,
                    stop_id=stop_id,
                    max_new_tokens=min(max_new_tokens, answer_tokens + 4),
                    device=device,
                    precision=precision,
                ):
                    predictions.append(decode(tokens_out))
            # the references make the same round trip through the tokenizer as the predictions
            # (a WordPiece decode puts spaces around "_"), so only the model's tokens differ
            references = [
                decode([t for t in data.input_ids[i][data.prompt_lengths[i] :] if t != stop_id])
                for i in chosen
            ]
            metrics["exact_match"] = exact_match(predictions, references)
    model.train(was_training)
    return metrics


def sft_steps(
    *,
    pad_id: int,
    device: torch.device,
    tokenizer: Any,
    stop_id: int | None,
    generate_examples: int,
    max_new_tokens: int,
    batch_size: int,
    precision: Any = None,
    pad_to_multiple_of: int = 1,
) -> TaskSteps:
    """The loop's batches, loss and evaluation for supervised fine-tuning."""

    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return completion_loss(model, batch, precision, device)

    def evaluate(model: nn.Module, data: SftSplit) -> dict[str, float]:
        return evaluate_sft(
            model,
            data,
            pad_id=pad_id,
            device=device,
            decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            stop_id=stop_id,
            generate_examples=generate_examples,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            precision=precision,
            pad_to_multiple_of=pad_to_multiple_of,
        )

    return TaskSteps(collate=collate_sft, loss=loss, evaluate=evaluate)


__all__ = [
    "sft_steps",
    "collate_sft",
    "completion_logits",
    "completion_loss",
    "evaluate_sft",
    "exact_match",
    "greedy_answers",
    "normalise",
]
