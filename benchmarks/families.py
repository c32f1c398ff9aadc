"""Each PEFT family at a typical setting: trainable parameters, seconds per step, accuracy.

    python benchmarks/families.py [--model minilm-l6] [--steps 300] [--families lora ia3 ...]
                                  [--cpus 2] [--gpus 0] [--json out.json]

Trains every family (and one AutoPEFT-style combination) on movie-review sentiment
(``vader-movies``, max_length 64, 500 validation examples), batch 32, through
``paretune.trainers.train_trial``, and prints a Markdown table, a row per family as it finishes:
trainable parameters (head included), seconds per training step (evaluation excluded) and
validation accuracy after ``--steps`` steps. Runs anywhere (CPU or CUDA, per ``--gpus``); on
a shared 2-core machine each family took about 15-20 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

# family -> (space section, learning rate): one typical setting each, every layer
SETTINGS: dict[str, tuple[dict[str, Any], float]] = {
    "lora": ({"lora": {"targets": ["query", "value"], "ranks": [8]}}, 2e-3),
    "ia3": ({"ia3": {"mode": "all"}}, 5e-3),
    "prefix": ({"prefix": {"length": 16}}, 1e-2),
    "serial_adapter": ({"serial_adapter": {"sizes": [32]}}, 2e-3),
    "parallel_adapter": ({"parallel_adapter": {"sizes": [32], "scaling": 4.0}}, 2e-3),
    "bitfit": ({"bitfit": {"mode": "all"}}, 5e-3),
    "paca": ({"paca": {"targets": ["query", "value"], "columns": [16]}}, 2e-3),
    "autopeft": (
        {
            "serial_adapter": {"sizes": [24]},
            "parallel_adapter": {"sizes": [24]},
            "prefix": {"length": 8},
        },
        2e-3,
    ),
}


def spec_for(name: str, model: str, cpus: float, gpus: float = 0.0) -> Any:
    from paretune.spaces import StudySpec

    space, lr = SETTINGS[name]
    return StudySpec.model_validate(
        {
            "study": f"bench-{name}",
            "model": model,
            "task": {
                "dataset": "vader-movies",
                "max_length": 64,
                "val_size": 500,
                "test_size": 500,
            },
            "space": {**space, "learning_rate": lr, "batch_size": 32, "warmup_ratio": 0.06},
            "resources": {"cpus": cpus, "gpus": gpus},
        }
    )


def run(name: str, model: str, steps: int, cpus: float, gpus: float = 0.0) -> dict[str, Any]:
    from paretune.spaces import config_from_params, dims_from_config, resolve_model
    from paretune.trainers import train_trial

    spec = spec_for(name, model, cpus, gpus)
    config = config_from_params({}, spec, dims_from_config(resolve_model(model).config))
    started = time.perf_counter()
    metrics = train_trial(spec, config, lambda step, m: True, max_steps=steps)
    return {
        "family": name,
        "setting": config.plan.summary(),
        "trainable_params": int(metrics["trainable_params"]),
        "seconds_per_step": metrics["train_seconds"] / steps,
        "accuracy": metrics["accuracy"],
        "wall_seconds": time.perf_counter() - started,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores visible, load average {load:.1f} at start"


HEADER = "| family | setting | trainable params | s/step | val accuracy |\n| --- | --- | ---: | ---: | ---: |"


def table_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['family']} | {r['setting']} | {r['trainable_params']:,} | "
        f"{r['seconds_per_step']:.3f} | {r['accuracy']:.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--cpus", type=float, default=2.0, help="threads of each run")
    parser.add_argument("--gpus", type=float, default=0.0, help="> 0: train on CUDA if present")
    parser.add_argument("--families", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    print(f"# {args.model}, vader-movies, batch 32, {args.steps} steps; {machine()}", flush=True)
    print(HEADER, flush=True)
    rows = []
    for name in args.families:
        row = run(name, args.model, args.steps, args.cpus, args.gpus)
        print(table_row(row), flush=True)  # one line per family as it finishes
        print(f"# {name}: {row['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "steps": args.steps, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
