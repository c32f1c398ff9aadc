"""Retraining a chosen configuration with several seeds, for test-split figures and an export.

``paretune export --retrain`` calls :func:`retrain` then :func:`summarize`. Apart from
:mod:`~paretune.trainers.export` (which saves adapters and never trains) so that training
(:mod:`~paretune.trainers.run`, which saves a full-fidelity trial's adapter) and export do not
import each other.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from paretune.spaces import StudySpec, TrialConfig

from .export import copy_adapter
from .run import always_continue, train_trial


def retrain(
    spec: StudySpec,
    config: TrialConfig,
    *,
    seeds: int,
    steps: int,
    out_dir: str | Path | None = None,
    on_seed: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``config`` with seeds 0..seeds-1 for ``steps`` steps; the metrics of each run,
    with the test split's (``test_accuracy``, ...) where the task has one: the search chose the
    configuration on the validation split, so the test split's figures are the unbiased ones.

    With ``out_dir``, the first seed's adapter is saved there (``train_trial`` writes it into the
    trial directory when the run reaches ``steps``).
    """
    results: list[dict[str, float]] = []
    for seed in range(seeds):
        run = replace(config, hparams=replace(config.hparams, seed=seed))
        with tempfile.TemporaryDirectory(prefix="paretune-retrain-") as tmp:
            keep = out_dir is not None and seed == 0
            metrics = train_trial(
                spec,
                run,
                always_continue,
                max_steps=steps,
                trial_dir=tmp if keep else None,
                test_split=True,
            )
            if keep:
                adapter = Path(tmp) / "adapter"
                if not adapter.is_dir():
                    raise RuntimeError(
                        "train_trial did not save the adapter of a run that reached max_steps"
                    )
                copy_adapter(adapter, out_dir)  # type: ignore[arg-type]
        results.append(metrics)
        if on_seed is not None:
            on_seed(seed, metrics)
    return results


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean, sample standard deviation (0 for one run) and values of every metric of ``runs``."""
    names = [k for k in runs[0] if all(k in r for r in runs)] if runs else []
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [float(r[name]) for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = {"mean": statistics.fmean(values), "std": std, "values": values}
    return out
