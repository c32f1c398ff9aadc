"""The Ray Tune side of the searcher: a ``Searcher`` that maps Ray trial ids onto
:class:`~paretune.search.service.searcher.SearchCore`, and a callback that hands it Ray's error text and
kills trials past their timeout. Ray is imported when they are made, not at module import."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from paretune.search.service.searcher import FINISHED
from paretune.search.service.trainable import TRIAL_KEY

if TYPE_CHECKING:
    from paretune.search.service.searcher import SearchCore

log = logging.getLogger(__name__)


WATCHDOG_GRACE_S = 30.0  # covers a worker's start-up, which the driver's clock includes


class TimeoutWatch:
    """Enforces ``search.trial_timeout_s`` on trials that stop reporting.

    A trial that reports past its timeout is asked to stop by its reporter (see
    :mod:`paretune.search.service.trainable`). One that hangs between reports is killed here, from the
    driver: once it has run ``trial_timeout_s`` plus a grace (30 s + 5 %) its Ray actor is killed,
    and it ends FAIL with reason ``timeout``.
    """

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.killed: set[str] = set()

    def check(self, core: SearchCore, trials: Sequence[Any], now: float | None = None) -> list[int]:
        limit = core.spec.search.trial_timeout_s
        if limit is None:
            return []
        now = time.monotonic() if now is None else now
        grace = WATCHDOG_GRACE_S + 0.05 * limit
        out = []
        for trial in trials:
            config = trial.config or {}
            if (
                trial.status != "RUNNING"
                or TRIAL_KEY not in config
                or trial.trial_id in self.killed
            ):
                continue
            elapsed = now - self.started.setdefault(trial.trial_id, now)
            if elapsed <= limit + grace:
                continue
            number = int(config[TRIAL_KEY])
            with core._lock:
                live = core.live.get(number)
                if live is None:
                    continue
                live.timed_out = True
                live.error = live.error or (
                    f"timeout: trial_timeout_s={limit} exceeded; the trial stopped reporting and "
                    f"was killed after {elapsed:.0f} s"
                )
            self.killed.add(trial.trial_id)
            if hasattr(trial, "max_failures"):  # search.max_failures: Ray must not restart it
                trial.max_failures = int(getattr(trial.run_metadata, "num_failures", 0))
            actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
            if actor is not None:
                import ray  # noqa: PLC0415

                ray.kill(actor, no_restart=True)
            log.warning("trial %s of %s timed out: killed", number, core.ctx.name)
            out.append(number)
        return out


def make_error_callback(core: SearchCore) -> Any:
    """A Tune callback that hands Ray's error text of a failed trial to ``core`` and kills
    trials past ``trial_timeout_s`` (:class:`TimeoutWatch`)."""
    return _error_callback_class()(core)


@functools.cache
def _error_callback_class() -> type:
    from ray.tune import Callback  # noqa: PLC0415

    class RayErrorCallback(Callback):
        def __init__(self, core: SearchCore) -> None:
            self.core: SearchCore | None = core
            self.watch = TimeoutWatch()

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            if self.core is not None:
                self.watch.check(self.core, trials)

        def on_trial_error(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            if self.core is None or TRIAL_KEY not in (trial.config or {}):
                return
            message = None
            try:
                if trial.error_file:
                    with open(trial.error_file) as f:
                        message = f.read()[-8000:].strip() or None
            except OSError:
                pass
            self.core.on_ray_error(int(trial.config[TRIAL_KEY]), message)

        def __getstate__(self) -> dict[str, Any]:
            return {"core": None}

    return RayErrorCallback


def make_ray_searcher(core: SearchCore) -> Any:
    """A ``ray.tune.search.Searcher`` over ``core`` (Ray is imported here, not at module import)."""
    return _searcher_class()(core)


@functools.cache
def _searcher_class() -> type:
    from ray.tune.search import Searcher  # noqa: PLC0415

    class ParetuneSearcher(Searcher):
        """Maps Ray trial ids onto Optuna trial numbers; all decisions live in :class:`SearchCore`."""

        def __init__(self, core: SearchCore) -> None:
            super().__init__(metric=None, mode=None)
            self.core: SearchCore | None = core
            self.numbers: dict[str, int] = {}

        def set_search_properties(self, metric: Any, mode: Any, config: Any, **spec: Any) -> bool:
            return True

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if self.core is None:
                return Searcher.FINISHED
            out = self.core.next_trial()
            if out == FINISHED:
                return Searcher.FINISHED
            if isinstance(out, dict):
                self.numbers[trial_id] = int(out[TRIAL_KEY])
            return out

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if self.core is not None and trial_id in self.numbers:
                self.core.on_result(self.numbers[trial_id], result)

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            if self.core is None or trial_id not in self.numbers:
                return
            number = self.numbers.pop(trial_id)
            if error:
                # Ray's error text reaches the callbacks only after this call: wait for it
                self.core.mark_ray_error(number)
            else:
                self.core.on_end(number, result, error)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: the study store is the searcher's state."""

        def restore(self, checkpoint_path: str) -> None:
            """Nothing to restore: resume rebuilds everything from the study store."""

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its config (tuner.pkl); the store and the study do not pickle.
            return {"_metric": None, "_mode": None, "core": None, "numbers": {}}

    return ParetuneSearcher
