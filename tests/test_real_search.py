"""``benchmarks/real_search.py --quick``: the real-task benchmark runs end to end (real
fine-tunes of minilm-l6, every method, the test-split scoring) and prints its two last lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_real_search_prints_both_last_lines(tmp_path):
    out = tmp_path / "real.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "real_search.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    beaten = re.fullmatch(r"real_search_baselines_beaten: (\d+)/(\d+)", lines[-2])
    ratio = re.fullmatch(r"real_search_hv_ratio_vs_tpe: (\S+)", lines[-1])
    assert beaten and ratio, lines[-5:]
    assert int(beaten.group(2)) == 6 and int(beaten.group(1)) <= 6  # six baselines, one data set
    float(ratio.group(1))
    text = res.stdout
    for name in (
        "LoRA r8 q,v",
        "LoRA r16 all projections",
        "IA3",
        "BitFit",
        "serial adapter 64",
        "parallel adapter 64",
    ):
        assert re.search(
            rf"{re.escape(name)}\s+\S+\s+0\.\d+\s+[\d,]+\s+(dominated|matched|loses)", text
        ), name
    assert out.exists()
