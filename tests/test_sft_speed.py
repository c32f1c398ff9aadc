"""benchmarks/sft_speed.py runs in its quick mode: every method on every plan, then the ratio."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sft_speed.py"


def test_quick_mode_measures_paretune_trl_and_the_trainer_and_prints_the_ratio(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--steps", "4", "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    for plan in ("r16 q,k,v,o all layers", "r16 q,k,v,o top half"):
        for method in ("paretune", "trl", "hf-trainer"):
            row = [line for line in lines if line.startswith(f"{plan:24s} {method:10s}")]
            assert len(row) == 1, (plan, method, lines)
            s_per_step, tok_s, mb, loss = (float(x) for x in row[0].split()[-4:])
            assert s_per_step > 0 and tok_s > 0 and mb > 100 and 0 < loss < 20
    ratio = re.fullmatch(r"sft_speedup_vs_trl: (\d+\.\d\d)", lines[-1])
    assert ratio and float(ratio.group(1)) > 0
    # the same tokens, batches, order, optimizer and schedule: the three train the same model
    rows = json.loads((tmp_path / "r.json").read_text())
    assert all(row["same_tokens"] for row in rows)
    gap = re.search(r"largest eval loss gap: (\d+\.\d\d) %", done.stdout)
    assert gap and float(gap.group(1)) < 0.5, done.stdout
