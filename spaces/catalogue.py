"""The objectives paretune can optimise, with their natural directions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectiveInfo:
    name: str
    direction: str  # "maximize" | "minimize"
    known_before_training: bool
    description: str
    tasks: tuple[str, ...] = ("classification", "causal_lm")  # the task types that report it


CLASSIFICATION, SFT = ("classification",), ("causal_lm",)

OBJECTIVES: dict[str, ObjectiveInfo] = {
    o.name: o
    for o in (
        ObjectiveInfo("accuracy", "maximize", False, "validation accuracy", CLASSIFICATION),
        ObjectiveInfo(
            "macro_f1", "maximize", False, "validation macro-averaged F1", CLASSIFICATION
        ),
        ObjectiveInfo(
            "eval_loss",
            "minimize",
            False,
            "validation cross-entropy (causal_lm: per completion token)",
        ),
        ObjectiveInfo("perplexity", "minimize", False, "exp(eval_loss) on the completions", SFT),
        ObjectiveInfo(
            "token_accuracy", "maximize", False, "completion tokens predicted right (greedy)", SFT
        ),
        ObjectiveInfo(
            "exact_match",
            "maximize",
            False,
            "greedy answers equal to the reference (normalised)",
            SFT,
        ),
        ObjectiveInfo("trainable_params", "minimize", True, "trainable parameters, head included"),
        ObjectiveInfo("train_seconds", "minimize", False, "wall-clock training time"),
        ObjectiveInfo("peak_memory_mb", "minimize", False, "peak memory while training"),
    )
}

METRIC_NAMES: tuple[str, ...] = tuple(OBJECTIVES)

# The test split's figure for each quality objective, as ``paretune export --retrain`` reports it
# (no trial of a search reads the test split).
TEST_METRICS: dict[str, str] = {
    "accuracy": "test_accuracy",
    "macro_f1": "test_macro_f1",
    "eval_loss": "test_loss",
    "perplexity": "test_perplexity",
    "token_accuracy": "test_token_accuracy",
    "exact_match": "test_exact_match",
}


def with_test_metrics(objectives: list[str]) -> list[str]:
    """The objectives, then the test split's figure of each quality objective among them: the
    order in which retraining reports list them."""
    return [*objectives, *(TEST_METRICS[o] for o in objectives if o in TEST_METRICS)]
