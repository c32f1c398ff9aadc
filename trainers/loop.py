"""The training loop: AdamW, linear warm-up and decay, clipping, evaluation at given steps.

Batches are grouped by length and padded to their own longest sequence, so short texts cost
little; evaluation runs under ``torch.inference_mode``. A reporter receives each evaluation and
may stop the run; checkpoints at evaluations let a trial continue later from where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from paretune.spaces.plan import Hyperparams
from paretune.spaces.spec import PAD_TO_MULTIPLE_OF

from .cpu_dropout import fast_cpu_dropout
from .precision import autocast, frozen_linears_in

Reporter = Callable[[int, dict[str, float]], bool]
CHECKPOINT = "checkpoint.pt"


class TokenizedSet(Protocol):
    """Token ids (unpadded) and labels of one split (``paretune.trainers.data.TokenizedSplit``)."""

    input_ids: list[list[int]]
    labels: list[int]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """Shuffled batches whose members have similar lengths (less padding), in shuffled order."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


class BatchStream:
    """An endless, deterministic stream of batch indices: step ``k`` always gets the same batch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self._epoch, self._batches = -1, []

    def batch(self, step: int) -> list[int]:
        per_epoch = math.ceil(len(self.lengths) / self.batch_size)
        epoch, k = divmod(step, per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = (
                epoch,
                length_grouped_batches(self.lengths, self.batch_size, self.seed, epoch),
            )
        return self._batches[k]


# Padded lengths are rounded up to a multiple of PAD_TO_MULTIPLE_OF (``training.pad_to_multiple_of``,
# 4). On the CPU the matrix library (oneDNN) compiles kernels for every new product shape, and a
# product's rows are batch x padded length: with every length from 5 to 64 tokens, a 100-step
# MiniLM trial compiled over a thousand of them, each a visible pause. Multiples of 4 leave 16 lengths
# to compile for; a longer multiple pads more than it saves (docs/training.md has the figures).
def padded_width(longest: int, multiple: int = 1, max_width: int | None = None) -> int:
    """``longest`` rounded up to a multiple of ``multiple``, never above ``max_width`` (the
    longest sequence of the split, so a batch is never wider than the data it comes from)."""
    width = -(-longest // multiple) * multiple
    return width if max_width is None else min(width, max(max_width, longest))


def padded_ids(
    seqs: Sequence[Sequence[int]], pad_id: int, *, multiple: int = 1, max_width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``seqs`` right-padded with ``pad_id`` to their own longest (rounded up as
    ``padded_width`` says), and the attention mask."""
    width = padded_width(max(len(s) for s in seqs), multiple, max_width)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def collate(
    data: TokenizedSet,
    idx: Sequence[int],
    pad_id: int,
    device: torch.device,
    *,
    multiple: int = 1,
    max_width: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pad to the batch's own longest sequence, rounded up as ``padded_width`` says."""
    seqs = [data.input_ids[i] for i in idx]
    ids, mask = padded_ids(seqs, pad_id, multiple=multiple, max_width=max_width)
    labels = torch.tensor([data.labels[i] for i in idx], dtype=torch.long)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def macro_f1(preds: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    scores = []
    for c in range(num_labels):
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(sum(scores) / num_labels)


class Runner(Protocol):
    """Computes logits for a batch of examples (the frozen-prefix path implements this)."""

    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        examples: list[int] | None = None,
        split: str = "train",
    ) -> torch.Tensor: ...


def forward_logits(
    model: nn.Module,
    runner: Runner | None,
    batch: dict[str, torch.Tensor],
    idx: Sequence[int],
    split: str,
) -> torch.Tensor:
    if runner is None:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return runner.logits(batch["input_ids"], batch["attention_mask"], list(idx), split)


def evaluate(
    model: nn.Module,
    data: TokenizedSet,
    pad_id: int,
    num_labels: int,
    device: torch.device,
    batch_size: int = 128,
    runner: Runner | None = None,
    split: str = "validation",
    precision: torch.dtype | None = None,
    pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
) -> dict[str, float]:
    """Accuracy, macro F1 and mean cross-entropy on a split, without autograd."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(data.labels)), key=lambda i: len(data.input_ids[i]))
    longest = len(data.input_ids[order[-1]]) if order else 0
    preds, losses = [], []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate(
                data, idx, pad_id, device, multiple=pad_to_multiple_of, max_width=longest
            )
            with autocast(precision, device):
                logits = forward_logits(model, runner, batch, idx, split).float()
            losses.append(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            preds.append(logits.argmax(-1).cpu())
    model.train(was_training)
    p = torch.cat(preds)
    y = torch.tensor([data.labels[i] for i in order])
    return {
        "accuracy": float((p == y).float().mean()),
        "macro_f1": macro_f1(p, y, num_labels),
        "eval_loss": float(torch.stack(losses).sum() / len(order)),
    }


def adamw(params: Sequence[torch.Tensor], hp: Hyperparams) -> torch.optim.AdamW:
    """A trial's optimizer: AdamW at ``hp.learning_rate``, weight decay on matrices only."""
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=hp.learning_rate,
    )


def warmup_linear(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


class PeakMemory:
    """Peak memory of this trial: CUDA allocator peak, or the process's resident set on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0.0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.sample()

    def sample(self) -> None:
        if self.device.type == "cuda":
            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device) / 2**20)
            return
        try:
            with open(f"/proc/{os.getpid()}/statm") as f:
                rss_pages = int(f.read().split()[1])
            self.peak = max(self.peak, rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20)
        except OSError:  # not Linux
            import resource  # noqa: PLC0415

            self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


@dataclass
class TrainState:
    step: int = 0
    train_seconds: float = 0.0


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: Path, model: nn.Module, optimizer: Any, state: TrainState) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": state.step,
            "train_seconds": state.train_seconds,
            "params": {n: p.detach().cpu() for n, p in _trainable(model).items()},
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
        },
        tmp,
    )
    os.replace(tmp, path)  # never a half-written checkpoint


def load_checkpoint(path: Path, model: nn.Module, optimizer: Any) -> TrainState:
    data = torch.load(path, map_location="cpu", weights_only=False)
    params = _trainable(model)
    with torch.no_grad():
        for n, t in data["params"].items():
            params[n].copy_(t)
    optimizer.load_state_dict(data["optimizer"])
    torch.set_rng_state(data["rng"])
    return TrainState(step=int(data["step"]), train_seconds=float(data["train_seconds"]))


class TrainingStep:
    """One optimizer step of ``train``, the body its loop repeats (benchmarks drive it too).

    Holds the AdamW optimizer (weight decay on matrices only), the warm-up/linear schedule and
    the length-grouped batch order of the seed; ``batch(k)`` is batch ``k`` padded to a multiple
    of ``pad_to_multiple_of``; ``step(k)`` trains on it and returns the loss (raises
    FloatingPointError on a non-finite one).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: TokenizedSet,
        hp: Hyperparams,
        *,
        pad_id: int,
        max_steps: int,
        device: torch.device,
        max_grad_norm: float = 1.0,
        runner: Runner | None = None,
        precision: torch.dtype | None = None,
        pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
        collate_fn: Callable[..., dict[str, torch.Tensor]] | None = None,
        loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None,
    ) -> None:
        self.model, self.train_set, self.hp = model, train_set, hp
        # the task's batches and loss (``sft.py`` for causal_lm); None: classification
        self.collate_fn, self.loss_fn = collate_fn or collate, loss_fn
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_id, self.device, self.max_grad_norm = pad_id, device, max_grad_norm
        self.runner, self.precision = runner, precision
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = adamw(self.params, hp)
        self.schedule = warmup_linear(int(hp.warmup_ratio * max_steps), max_steps)
        lengths = [len(x) for x in train_set.input_ids]
        self.longest = max(lengths, default=0)
        self.stream = BatchStream(lengths, hp.batch_size, hp.seed)

    def batch(self, step: int) -> tuple[list[int], dict[str, torch.Tensor]]:
        """The examples of batch ``step`` and their padded tensors."""
        idx = self.stream.batch(step)
        return idx, self.collate_fn(
            self.train_set,
            idx,
            self.pad_id,
            self.device,
            multiple=self.pad_to_multiple_of,
            max_width=self.longest,
        )

    def step(self, step: int) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.hp.learning_rate * self.schedule(step)
        idx, batch = self.batch(step)
        if self.loss_fn is not None:
            loss = self.loss_fn(self.model, batch)
        else:
            with autocast(self.precision, self.device):
                logits = forward_logits(self.model, self.runner, batch, idx, "train")
            loss = F.cross_entropy(logits.float(), batch["labels"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {step + 1}")
        if not self.params:  # a plan that trains nothing (no head on a causal LM): the base model
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        return loss


@dataclass(frozen=True)
class TaskSteps:
    """What a task type other than classification changes in the loop: how a batch is padded,
    its loss, and an evaluation of a split (``sft.sft_steps`` builds the causal LM one)."""

    collate: Callable[..., dict[str, torch.Tensor]]
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]
    evaluate: Callable[[nn.Module, Any], dict[str, float]]


def dropout_context(model: nn.Module, device: torch.device) -> contextlib.AbstractContextManager:
    """Training-mode dropout the fast way on the CPU (``cpu_dropout.py``); as is elsewhere."""
    return fast_cpu_dropout(model) if device.type == "cpu" else contextlib.nullcontext()


def train(
    model: nn.Module,
    train_set: TokenizedSet,
    eval_set: TokenizedSet,
    hp: Hyperparams,
    *,
    num_labels: int,
    pad_id: int,
    max_steps: int,
    eval_steps: Sequence[int],
    reporter: Reporter,
    static_metrics: dict[str, float] | None = None,
    device: torch.device | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    max_grad_norm: float = 1.0,
    runner: Runner | None = None,
    reached: list[int] | None = None,
    precision: torch.dtype | None = None,
    pad_to_multiple_of: int = PAD_TO_MULTIPLE_OF,
    eval_batch_size: int = 128,
    task: TaskSteps | None = None,
) -> dict[str, float]:
    """Train up to ``max_steps``, evaluating at ``eval_steps`` (and at the end).

    With ``checkpoint_dir`` a checkpoint is written at every evaluation and, if one is there at
    the start, training continues from it (same batches, optimizer state and step counter).
    Returns the last evaluation's metrics; ``reached`` (if given) receives every evaluated step.
    ``precision``: the autocast dtype of forward passes (None: fp32; see ``precision.py``).
    ``pad_to_multiple_of``: padded lengths are rounded up to it (``PAD_TO_MULTIPLE_OF``).
    ``task``: another task's batches, loss and evaluation (None: classification).
    """
    device = device or torch.device("cpu")
    model.to(device)
    trainer = TrainingStep(
        model,
        train_set,
        hp,
        pad_id=pad_id,
        max_steps=max_steps,
        device=device,
        max_grad_norm=max_grad_norm,
        runner=runner,
        precision=precision,
        pad_to_multiple_of=pad_to_multiple_of,
        collate_fn=task.collate if task else None,
        loss_fn=task.loss if task else None,
    )
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    state = TrainState()
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, model, trainer.optimizer)
    else:
        torch.manual_seed(hp.seed)
    evals = sorted({s for s in eval_steps if state.step < s <= max_steps} | {max_steps})
    memory = PeakMemory(device)
    metrics: dict[str, float] = {}
    model.train()
    with dropout_context(model, device), frozen_linears_in(model, precision):
        while state.step < max_steps:
            started = time.perf_counter()
            loss = trainer.step(state.step)
            state.step += 1
            state.train_seconds += time.perf_counter() - started
            memory.sample()
            if progress:
                progress(state.step)
            if state.step in evals:
                if task is not None:
                    metrics = task.evaluate(model, eval_set)
                else:
                    metrics = evaluate(
                        model,
                        eval_set,
                        pad_id,
                        num_labels,
                        device,
                        batch_size=eval_batch_size,
                        runner=runner,
                        precision=precision,
                        pad_to_multiple_of=pad_to_multiple_of,
                    )
                metrics.update(static_metrics or {})
                metrics["train_seconds"] = state.train_seconds
                metrics["peak_memory_mb"] = memory.peak
                metrics["train_loss"] = float(loss.detach())
                bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                if bad:  # never checkpoint or report a diverged model
                    raise FloatingPointError(f"{bad[0]} is {metrics[bad[0]]} at step {state.step}")
                if ckpt is not None:
                    save_checkpoint(ckpt, model, trainer.optimizer, state)
                if reached is not None:
                    reached.append(state.step)
                if not reporter(state.step, dict(metrics)):
                    break
    return metrics
