"""Does the best learning rate fall as the adapters grow? Real fine-tunes, sizes against rates.

    python benchmarks/lr_by_size.py [--steps 150] [--rates 3e-4 1e-3 3e-3 1e-2 3e-2]

The search conditions each fitted proposal's learning rate on its trainable parameters
(``search/algorithms/conditioned_floats.py``) because the benchmark's LoRA surrogate, and the usual
experience, say the optimum falls with size. This checks it on real training: MiniLM-L6 on
``vader-movies`` (the quickstart's model, data and split), LoRA on one module (rank 2 on the
last layer's value), on every query and value at rank 2, and at rank 16, each at every rate,
through ``paretune trial``. Prints validation accuracy and loss per size and rate, and the rate
with the lowest loss per size. 15 runs of 150 steps take about 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LAYERS, TARGETS = 6, ("query", "value")
SIZES = {  # name -> rank per (layer, target)
    "rank 2 on layer 5 value": lambda layer, target: 2 if (layer, target) == (5, "value") else 0,
    "rank 2 on every query, value": lambda layer, target: 2,
    "rank 16 on every query, value": lambda layer, target: 16,
}


def spec_file(directory: Path) -> Path:
    """The quickstart spec with ranks 0, 2 and 16 and a wide learning-rate range."""
    spec = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec["study"] = "lr-by-size"
    spec["space"]["lora"]["ranks"] = [0, 2, 16]
    spec["space"]["learning_rate"] = {"low": 1e-5, "high": 1e-1, "log": True}
    path = directory / "lr-by-size.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(spec: Path, ranks, lr: float, steps: int) -> dict:
    params = {
        f"lora.rank.L{layer}.{target}": ranks(layer, target)
        for layer in range(LAYERS)
        for target in TARGETS
    }
    params["learning_rate"] = lr
    cli = str(Path(sys.executable).with_name("paretune"))  # the venv's console script
    cmd = [cli, "trial", str(spec), "--params", json.dumps(params)]
    out = subprocess.run(
        [*cmd, "--max-steps", str(steps), "--json"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"paretune trial failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
    args = ap.parse_args(argv)
    best: dict[str, tuple[float, float, int]] = {}
    print("| adapters | trainable params | learning rate | val accuracy | val loss |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_file(Path(tmp))
        for name, ranks in SIZES.items():
            for lr in args.rates:
                m = run(spec, ranks, lr, args.steps)
                n = int(m["trainable_params"])
                print(f"| {name} | {n:,} | {lr:g} | {m['accuracy']:.3f} | {m['eval_loss']:.4f} |")
                sys.stdout.flush()
                if name not in best or m["eval_loss"] < best[name][1]:
                    best[name] = (lr, m["eval_loss"], n)
    for name, (lr, loss, n) in best.items():
        print(f"best rate for {name} ({n:,} params): {lr:g} (val loss {loss:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
