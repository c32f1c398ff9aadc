"""Continuous parameters re-chosen for a proposal's known size (``search/algorithms/conditioned_floats.py``).

The crafted results have a learning-rate optimum that falls as the size grows, as a fine-tune's
does: 10^-2.5 at size 10, 10^-3.5 at size 100,000. A proposal's rate must follow its size.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from sized_space import LR_HIGH, LR_LOW, SIZES, sized

from paretune.search.algorithms.conditioned_floats import MIN_OBSERVATIONS, conditioned_floats
from paretune.search.algorithms.fidelity import CONDITIONED_ATTR, KNOWN_ATTR, FidelityAwareAsker

LR = optuna.distributions.FloatDistribution(LR_LOW, LR_HIGH, log=True)
DISTS = {"size": optuna.distributions.CategoricalDistribution(SIZES), "lr": LR}


def best_log_lr(size: float) -> float:
    return -2.5 - 0.25 * math.log10(size / 10)


def accuracy(size: float, lr: float) -> float:
    return 0.9 - 0.1 * (math.log10(lr) - best_log_lr(size)) ** 2 + 0.01 * math.log10(size)


def results(sizes: list[int], log_lrs: list[float]) -> list[tuple[dict[str, Any], float, float]]:
    out = []
    for size in sizes:
        for x in log_lrs:
            params = {"size": size, "lr": 10**x}
            out.append((params, float(size), accuracy(size, 10**x)))
    return out


OBSERVED = results([10, 1_000, 100_000], [-4.0, -3.5, -3.0, -2.5, -2.0])


@pytest.mark.parametrize("size", [10, 1_000, 100_000])
def test_the_rate_follows_the_proposals_size(size):
    chosen = conditioned_floats(
        {"size": size, "lr": 1e-4}, DISTS, float(size), OBSERVED, maximize=True
    )
    assert chosen is not None
    assert abs(math.log10(chosen["lr"]) - best_log_lr(size)) < 0.25


def test_an_anchor_carries_what_large_plans_taught_to_a_small_one():
    """Results only at large sizes: unanchored, a small plan gets their rate (too low for it,
    as small real plans then stay at the majority class); anchored on the size's rate law, it
    gets the rate that suits it."""
    large_only = results([10_000, 100_000], [-4.0, -3.75, -3.5, -3.25, -3.0])
    proposal = {"size": 10, "lr": 1e-4}
    plain = conditioned_floats(proposal, DISTS, 10.0, large_only, maximize=True)
    anchored = conditioned_floats(
        proposal, DISTS, 10.0, large_only, maximize=True,
        anchors={"lr": lambda size: 10 ** best_log_lr(size)},
    )  # fmt: skip
    assert plain is not None and anchored is not None
    assert math.log10(plain["lr"]) < best_log_lr(10) - 0.4  # the large plans' rate
    assert abs(math.log10(anchored["lr"]) - best_log_lr(10)) < 0.25


def test_the_asker_anchors_the_learning_rate_on_the_size_law():
    from paretune.search.algorithms.fidelity import RATE_ANCHORS
    from paretune.spaces.combine import ideal_rate

    assert RATE_ANCHORS == {"learning_rate": ideal_rate}
    assert ideal_rate(2306) == pytest.approx(3e-2)
    assert ideal_rate(2306 * 10**1.8) == pytest.approx(3e-3, rel=0.02)


def test_a_size_between_the_observed_ones_gets_a_rate_between_theirs():
    chosen = conditioned_floats({"size": 100, "lr": 1e-2}, DISTS, 100.0, OBSERVED, maximize=True)
    assert chosen is not None
    assert best_log_lr(1_000) - 0.1 < math.log10(chosen["lr"]) < best_log_lr(10) + 0.1


def test_a_minimised_objective_is_turned_around():
    flipped = [(p, k, -v) for p, k, v in OBSERVED]
    up = conditioned_floats({"size": 10, "lr": 1e-4}, DISTS, 10.0, OBSERVED, maximize=True)
    down = conditioned_floats({"size": 10, "lr": 1e-4}, DISTS, 10.0, flipped, maximize=False)
    assert up == down


def test_nothing_is_chosen_without_enough_results_or_a_continuous_parameter():
    few = OBSERVED[: MIN_OBSERVATIONS - 1]
    assert conditioned_floats({"size": 10, "lr": 1e-3}, DISTS, 10.0, few, maximize=True) is None
    assert conditioned_floats({"size": 10}, DISTS, 10.0, OBSERVED, maximize=True) is None
    # results lacking the parameter (another branch of a conditional space) do not count
    other = [({"size": p["size"]}, k, v) for p, k, v in OBSERVED]
    assert conditioned_floats({"size": 10, "lr": 1e-3}, DISTS, 10.0, other, maximize=True) is None


def test_a_stepped_range_gets_a_value_on_its_steps_inside_its_bounds():
    dists = {
        "size": DISTS["size"],
        "wd": optuna.distributions.FloatDistribution(0.0, 0.3, step=0.1),
    }
    observed = [
        ({"size": s, "wd": w}, float(s), 0.5 + w) for s in (10, 1000) for w in (0, 0.1, 0.2)
    ]
    chosen = conditioned_floats({"size": 10, "wd": 0.0}, dists, 10.0, observed, maximize=True)
    assert chosen is not None
    assert chosen["wd"] in (0.0, 0.1, 0.2, 0.3)
    assert chosen["wd"] >= 0.2  # the results rise with it


def test_several_continuous_parameters_are_chosen_together_and_deterministically():
    dists = {**DISTS, "dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}
    observed = [
        ({**p, "dropout": d}, k, v - abs(d - 0.1)) for p, k, v in OBSERVED for d in (0.0, 0.1, 0.4)
    ]
    proposal = {"size": 10, "lr": 1e-4, "dropout": 0.5}
    first = conditioned_floats(proposal, dists, 10.0, observed, maximize=True, seed=3)
    again = conditioned_floats(proposal, dists, 10.0, observed, maximize=True, seed=3)
    assert first == again
    assert first is not None
    assert abs(math.log10(first["lr"]) - best_log_lr(10)) < 0.4
    assert first["dropout"] < 0.3


# -- in the fidelity-aware asker ---------------------------------------------------------------


def asker_with_results(objectives: list[str], **kw: Any) -> FidelityAwareAsker:
    asker = FidelityAwareAsker(
        rungs=[3, 9],
        objectives=objectives,
        directions=["maximize", "minimize", "minimize"][: len(objectives)],
        seed=5,
        known=lambda drawn: float(drawn["size"]),
        **kw,
    )
    for i, (params, size, acc) in enumerate(OBSERVED):
        trial = optuna.trial.create_trial(params=params, distributions=DISTS, value=0.0)
        trial.number = i
        values = {"accuracy": acc, "trainable_params": size, "peak_memory_mb": 1.0}
        asker.observe(trial, 3, {**values, "accuracy": acc - 0.1})
        asker.observe(trial, 9, values)
    return asker


def test_a_fitted_asker_gives_its_pick_the_rate_for_its_size():
    asker = asker_with_results(["accuracy", "trainable_params"])
    k, chosen = asker.suggest(sized, number=len(OBSERVED))
    size = chosen.params["size"]
    assert abs(math.log10(chosen.params["lr"]) - best_log_lr(size)) < 0.25
    assert chosen.user_attrs[KNOWN_ATTR] == float(size)
    study = asker.model_study(k)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert [t.number for t in running] == [chosen.number]  # TPE's own pick was withdrawn
    # without the conditioning the same ask keeps TPE's rate, which is not the size's
    plain = asker_with_results(["accuracy", "trainable_params"], condition_floats=False)
    _, tpe = plain.suggest(sized, number=len(OBSERVED))
    assert tpe.params["size"] == size
    assert tpe.params["lr"] != chosen.params["lr"]
    assert chosen.user_attrs[CONDITIONED_ATTR] == {"lr": tpe.params["lr"]}


def test_the_real_trial_records_the_rate_tpe_proposed():
    asker = asker_with_results(["accuracy", "trainable_params"])
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params, size, acc in OBSERVED:  # the real study holds as many trials as were observed
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=DISTS, values=[acc, size])
        )
    trial = asker.ask(study, sized)
    sized(trial)  # the enqueued values become the trial's parameters as it samples them
    assert abs(math.log10(trial.params["lr"]) - best_log_lr(trial.params["size"])) < 0.25
    assert set(trial.user_attrs[CONDITIONED_ATTR]) == {"lr"}
    assert trial.user_attrs[CONDITIONED_ATTR]["lr"] != trial.params["lr"]


def test_the_asker_leaves_the_rate_alone_with_another_unknown_objective():
    objectives = ["accuracy", "trainable_params", "peak_memory_mb"]
    on = asker_with_results(objectives)
    off = asker_with_results(objectives, condition_floats=False)
    assert on.suggest(sized, number=20)[1].params == off.suggest(sized, number=20)[1].params
