"""The search-efficiency benchmark: its test problems, its scoring, and the script end to end."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

from problems import MFDTLZ2, PeftSurrogate  # noqa: E402
from search_efficiency import (  # noqa: E402
    FINAL_KEY,
    Curve,
    ReportedFront,
    _ray_curves,
    median_interval,
    print_finals,
    summarise,
)


class _Draw:
    """A stand-in for an Optuna trial that draws uniformly."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        if log:
            return float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
        return float(self.rng.uniform(low, high))

    def suggest_categorical(self, name: str, choices: tuple) -> object:
        return choices[int(self.rng.integers(len(choices)))]


def test_dtlz2_is_exact_at_full_fidelity_and_its_front_scores_one() -> None:
    p = MFDTLZ2()
    on_front = [{"x0": a, **{f"x{i}": 0.5 for i in range(1, 6)}} for a in np.linspace(0, 1, 400)]
    assert p.normalised_hypervolume(on_front) == pytest.approx(1.0, abs=0.01)
    x = {f"x{i}": 0.2 + 0.1 * i for i in range(6)}
    quiet = np.random.default_rng(0)
    assert p.true_values(x) == pytest.approx(p._values(x, p.max_steps, 0.0))
    low = p.true_values(x, p.min_steps)
    assert low["f1"] > p.true_values(x)["f1"]  # biased at low fidelity, exact at max_steps
    assert abs(p.observe(x, p.max_steps, quiet)["f1"] - p.true_values(x)["f1"]) < 0.1


def test_peft_surrogate_counts_parameters_exactly_and_its_curves_cross() -> None:
    p = PeftSurrogate()
    rng = np.random.default_rng(1)
    configs = [p.sample(_Draw(rng)) for _ in range(300)]
    for c in configs[:20]:
        ranks = sum(v for k, v in c.items() if k.startswith("r."))
        assert p.true_values(c)["trainable_params"] == ranks * (384 + 384) + 384 * 2 + 2
    assert p.normalised_hypervolume(configs) < 1.0  # the computed front bounds every sample
    early = [p.true_values(c, 30)["accuracy"] for c in configs]
    final = [p.true_values(c)["accuracy"] for c in configs]
    flips = sum(
        (early[i] - early[j]) * (final[i] - final[j]) < 0
        for i in range(60)
        for j in range(i + 1, 60)
    )
    assert flips > 50  # learning curves cross: early order differs from final order


def test_curve_reads_the_last_answer_within_a_budget() -> None:
    c = Curve(budget=100)
    for compute, score in [(10, 0.1), (40, 0.5), (35, 0.6), (90, 0.7)]:
        c.add(compute, score)
    assert c.at(0.05) == 0.0
    assert c.at(0.4) == 0.6  # the latest answer deliverable within 40
    assert c.at(1.0) == 0.7
    assert c.compute_to_reach(0.55) == pytest.approx(0.35)
    assert c.compute_to_reach(0.9) == float("inf")


def test_reported_front_keeps_the_non_dominated_and_owes_their_training() -> None:
    p = PeftSurrogate()
    base = {f"r.L{layer}.{t}": 0 for layer in range(6) for t in ("query", "value")}
    big = {**base, "r.L5.value": 16, "log_lr": -3.0}
    small = {**base, "r.L5.value": 4, "log_lr": -3.0}
    front = ReportedFront(p)
    front.add(big, {"accuracy": 0.80, "trainable_params": 13058.0})
    front.add(small, {"accuracy": 0.60, "trainable_params": 3842.0}, step=10)
    front.add(big, {"accuracy": 0.70, "trainable_params": 13058.0})  # dominated: ignored
    assert [m.step for m in front.members] == [270, 10]
    assert front.completion == 260
    assert front.delivered <= front.score


def test_ray_replay_charges_the_training_a_partial_front_still_owes() -> None:
    p = PeftSurrogate()
    base = {f"r.L{layer}.{t}": 0 for layer in range(6) for t in ("query", "value")}
    a = {**base, "r.L5.value": 4, "log_lr": -3.0}
    b = {**base, "r.L5.value": 16, "log_lr": -3.0}
    events = [
        ("a", 10, a, {"accuracy": 0.6, "trainable_params": 3842.0}),
        ("b", 10, b, {"accuracy": 0.55, "trainable_params": 13058.0}),
        ("b", 30, b, {"accuracy": 0.7, "trainable_params": 13058.0}),
    ]
    completed, delivered = _ray_curves(p, events, budget=10_000)
    assert delivered.compute == [10, 40]
    assert completed.compute == [10 + 260, 40 + 260 + 240]
    assert completed.score[-1] >= delivered.score[-1]


def test_the_surrogate_samples_the_learning_rate_as_the_service_does() -> None:
    """Same name, bounds and scale: an in-process run and a service run see the same floats."""
    import optuna  # noqa: PLC0415
    from search_efficiency import service_spec, surrogate_params  # noqa: PLC0415

    from paretune.spaces import parse_spec  # noqa: PLC0415

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = PeftSurrogate().sample(trial)
    dist = trial.distributions["learning_rate"]
    lr = parse_spec(service_spec("s", 10, "highest-rung")).spec.space.learning_rate
    assert (dist.low, dist.high, dist.log) == (lr.low, lr.high, lr.log)
    assert params["log_lr"] == surrogate_params(None, trial.params["learning_rate"])["log_lr"]


def test_quick_benchmark_runs_and_ends_with_the_summary_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "search_efficiency.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(rf"{FINAL_KEY}: (inf|\d+\.\d\d)", lines[-1]), lines[-1]
    assert "ray optuna+asha" in proc.stdout and "paretune mo-hyperband+tpe" in proc.stdout
    spread = re.search(
        r"compute to match per seed: ((?:\S+ )*\S+); 90% bootstrap interval of their median: "
        r"(\S+) \.\. (\S+)",
        proc.stdout,
    )
    assert spread and len(spread.group(1).split()) == 3, proc.stdout[-2000:]  # --quick: 3 seeds
    lo, hi = float(spread.group(2)), float(spread.group(3))
    assert lo <= float(lines[-1].split()[-1]) <= hi
    assert (tmp_path / "search_efficiency_quick.png").stat().st_size > 10_000
    for problem in ("mf-dtlz2", "peft-lora"):
        finals = re.search(
            rf"\n{problem}, final hv, median \(90% bootstrap interval\): (.+)", proc.stdout
        )
        assert finals and finals.group(1).count(" .. ") == 6, proc.stdout[-2000:]  # every row
        assert re.search(
            rf"\n{problem}: paretune mo-hyperband\+tpe's median final hv is ", proc.stdout
        )


def test_median_interval_brackets_the_median_and_widens_with_the_spread() -> None:
    tight = [0.40, 0.41, 0.39, 0.40, 0.42, 0.38, 0.40, 0.41, 0.39, 0.40]
    wide = [0.2, 0.9, 0.3, 0.45, math.inf, 0.25, 0.6, 0.35, 0.8, 0.4]
    lo, hi = median_interval(tight)
    assert 0.38 <= lo <= np.median(tight) <= hi <= 0.42
    wlo, whi = median_interval(wide)
    assert wlo <= np.median(wide) <= whi and whi - wlo > 3 * (hi - lo)
    assert median_interval([0.5] * 10) == (0.5, 0.5)
    assert median_interval(wide) == median_interval(wide)  # seeded: the same line every run
    assert median_interval([math.inf] * 6 + [0.3] * 4)[1] == math.inf


def _curves(finals: list[float], budget: int = 100) -> list[Curve]:
    out = []
    for final in finals:
        curve = Curve(budget)
        curve.add(budget // 2, final / 2)
        curve.add(budget, final)
        out.append(curve)
    return out


def test_the_final_hypervolume_line_says_which_baseline_ends_ahead(capsys) -> None:
    hb, tpe, ray = (
        "paretune mo-hyperband+tpe",
        "optuna tpe (full fidelity)",
        "ray optuna+asha",
    )
    ours = [0.80, 0.82, 0.84, 0.86, 0.88]
    _, summary = summarise(
        {hb: _curves(ours), tpe: _curves([0.81, 0.83, 0.85, 0.87, 0.89]), ray: _curves([0.5] * 5)}
    )
    assert summary[hb].finals == ours  # each seed's score at the whole budget
    print_finals("peft-lora", summary)
    out = capsys.readouterr().out
    lo, hi = median_interval(ours)
    assert f"{hb} 0.8400 ({lo:.4f} .. {hi:.4f})" in out and "ray optuna+asha 0.5000" in out
    assert out.strip().endswith(f"{hb}'s median final hv is below {tpe}")
    _, summary = summarise({hb: _curves(ours), tpe: _curves([0.84] * 5), ray: _curves([0.5] * 5)})
    print_finals("peft-lora", summary)
    assert capsys.readouterr().out.strip().endswith("median final hv is at least every baseline's")
