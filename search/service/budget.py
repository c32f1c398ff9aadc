"""How much of ``search.n_trials`` a study has used.

Budget (``search.n_trials``): every trial the study ever had counts, whatever its state, except

- rejected plans (never trained), and
- interrupted trials that were queued again: their retry takes their place in the budget.

So when a study ends, COMPLETE + PRUNED + FAIL (failed, or interrupted with no retry left) equals
``n_trials``. A configuration (by config hash) is retried at most ``search.max_retries`` times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    """How much of ``n_trials`` the study has used (see the module docstring for the rules)."""

    n_trials: int
    used: int
    waiting: int
    rejected: int
    requeued: int

    @property
    def remaining(self) -> int:
        """New trials that may still be asked (queued retries are already counted in ``used``)."""
        return max(0, self.n_trials - self.used)

    @property
    def can_ask(self) -> bool:
        return self.waiting > 0 or self.remaining > 0


def requeued_numbers(trials: Sequence[Any]) -> set[int]:
    """Numbers of the trials that a retry replaced."""
    return {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def count_budget(trials: Sequence[Any], n_trials: int) -> Budget:
    from optuna.trial import TrialState  # noqa: PLC0415

    replaced = requeued_numbers(trials)
    rejected = sum(1 for t in trials if t.user_attrs.get("rejected"))
    used = sum(1 for t in trials if not t.user_attrs.get("rejected") and t.number not in replaced)
    waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
    return Budget(n_trials, used, waiting, rejected, len(replaced))


def trailing_rejections(trials: Sequence[Any]) -> int:
    """Rejections since the last trained trial: the count that ``max_rejections`` caps."""
    n = 0
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        if not t.user_attrs.get("rejected"):
            break
        n += 1
    return n
