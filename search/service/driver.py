"""The driver: holds a study with a heartbeat and runs it on Ray Tune until the budget is spent.

``run_study(ctx)`` claims the study (one live driver per study unless a second one joins), ends
what a dead driver left behind, starts Ray (locally, or joins ``address``), and runs a ``Tuner``
with paretune's searcher and trial scheduler. Ray's files go under the study's run directory
(``spec.artifacts`` or ``runs/<study>``). It returns a :class:`RunOutcome`; the study's status in
the store says the same (``done``, ``interrupted``, ``stopped``, ``gave-up``, ``failed``).

The trial scheduler comes from :func:`make_trial_scheduler` in ``paretune.search.algorithms.schedulers``
(multi-objective ASHA / Hyperband). The seam::

    make_trial_scheduler(spec, on_decision, history) -> ray.tune.schedulers.TrialScheduler

- ``on_decision(decision: dict)`` records a rung decision; the dict holds ``trial_number``,
  ``rung``, ``rank``, ``action`` ("promote" | "stop"), ``reason`` and anything else useful; it is
  stored as an event whose kind is the action;
- ``history`` is ``[(trial_number, step, {metric: value}), ...]``: every result the store holds,
  so a resumed study ranks new trials against the old rungs.

Until that module exists (and always for ``search.scheduler: none``) Ray's FIFO scheduler runs
every trial to ``max_steps``. Any trial a scheduler stops before ``max_steps`` ends PRUNED.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from paretune.search.algorithms.fidelity import History
from paretune.search.service.context import StudyContext
from paretune.search.service.deepening import continue_front
from paretune.search.service.progress import ProgressState
from paretune.search.service.ray_searcher import make_error_callback, make_ray_searcher
from paretune.search.service.recovery import make_retry_callback
from paretune.search.service.requeue import recover_orphans
from paretune.search.service.searcher import SearchCore
from paretune.search.service.trainable import TRIAL_KEY, TrialFn, make_trainable
from paretune.search.service.trial_results import rung_history
from paretune.search.store.study_store import StudyStore, utcnow
from paretune.spaces import StudySpec
from paretune.spaces.errors import UserError

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0
STOP_REQUESTED = "stop-requested"


class StudyBusyError(UserError):
    """Another live driver runs the study."""


@dataclass
class DriverOptions:
    """How to run: where Ray is, whether to join a live driver, heartbeat timing."""

    address: str | None = None  # a Ray cluster to join; None starts Ray here
    join: bool = False  # share the study with a live driver instead of refusing
    num_cpus: int | None = None  # CPUs of a local Ray (None: all of them)
    heartbeat_s: float = HEARTBEAT_S
    stale_after_s: float = STALE_AFTER_S
    handle_sigint: bool = True  # Ctrl-C stops the study cleanly (main thread only)
    run_dir: str | None = None  # overrides spec.artifacts / runs/<study>
    reuse_actors: bool = True  # one Ray worker runs many trials: data and weights stay loaded


@dataclass(frozen=True)
class RunOutcome:
    status: str  # done | interrupted | stopped | gave-up | failed | busy-elsewhere
    message: str
    interrupted_trials: tuple[int, ...] = ()

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


# -- identity and liveness of drivers ----------------------------------------------------------


def new_driver_id() -> str:
    """``host:pid:random``: a driver on the same host whose process is gone is known dead at once."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_is_dead_here(driver_id: str | None) -> bool:
    """True when ``driver_id`` names a process on this host that no longer exists."""
    if not driver_id or driver_id.count(":") < 2:
        return False
    host, pid, _ = driver_id.rsplit(":", 2)
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def driver_is_live(info: Any, stale_after_s: float = STALE_AFTER_S) -> bool:
    """A driver holds the study: a fresh heartbeat from a process that is not known dead."""
    if not info.driver_id or info.heartbeat_at is None:
        return False
    if driver_is_dead_here(info.driver_id):
        return False
    return (utcnow() - info.heartbeat_at).total_seconds() < stale_after_s


def busy_error(info: Any, stale_after_s: float = STALE_AFTER_S) -> StudyBusyError:
    """The refusal a second driver gets, naming the ways out."""
    age = (utcnow() - info.heartbeat_at).total_seconds() if info.heartbeat_at else 0.0
    return StudyBusyError(
        f"study {info.name!r} is being run by another driver on {info.driver_host} (heartbeat {age:.0f} s "
        f"ago); use `paretune resume {info.name} --join` to add this driver, `paretune stop {info.name}` "
        f"to stop it, or wait {stale_after_s:.0f} s if it died"
    )


def claim(
    store: StudyStore, name: str, driver_id: str, *, join: bool, stale_after_s: float
) -> None:
    """Take the study for this driver, or raise :class:`StudyBusyError` naming the way out."""
    info = store.get_study(name)
    stale = 0.0 if driver_is_dead_here(info.driver_id) else stale_after_s
    if not store.claim_driver(name, driver_id, join=join, stale_after_s=stale):
        raise busy_error(store.get_study(name), stale_after_s)


class Heartbeat:
    """Keeps the driver's claim fresh from a background thread and watches for a stop request."""

    def __init__(
        self,
        store: StudyStore,
        name: str,
        driver_id: str,
        interval_s: float,
        on_stop: Callable[[], None],
    ) -> None:
        self.store, self.name, self.driver_id = store, name, driver_id
        self.interval_s = interval_s
        self.on_stop = on_stop
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"paretune-heartbeat-{name}", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                # join=True: drivers sharing a study keep the claim fresh between them
                self.store.claim_driver(self.name, self.driver_id, join=True, stale_after_s=0)
                if self.store.get_study(self.name).status in (STOP_REQUESTED, "stopped"):
                    self.on_stop()
            except Exception:  # a database hiccup must not kill the driver; the next beat retries
                log.warning("heartbeat of study %s failed", self.name, exc_info=True)


# -- the trial scheduler seam ------------------------------------------------------------------


class DecisionLog:
    """``on_decision`` for the scheduler: each decision becomes an event of kind promote/stop.

    Picklable (Tune pickles its scheduler): the store is dropped from the pickled state.
    """

    def __init__(self, store: StudyStore, study_id: int) -> None:
        self.store: StudyStore | None = store
        self.study_id = study_id

    def __call__(self, decision: dict[str, Any]) -> None:
        if self.store is None:
            return
        kind = str(decision.get("action", "decision"))
        number = decision.get("trial_number")
        self.store.log_event(
            self.study_id,
            kind,
            dict(decision),
            trial_number=None if number is None else int(number),
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"store": None, "study_id": self.study_id}


def trial_scheduler(
    ctx: StudyContext,
    on_decision: Callable[[dict[str, Any]], None],
    history: History | None = None,
    shared: Any = None,
) -> Any:
    """The spec's scheduler from ``paretune.search.algorithms.schedulers``; FIFO for ``none`` or until it exists.

    ``history``: the stored results its rungs are rebuilt from (read from the store when None);
    ``shared``: the :class:`SharedResults` of the driver's core, so that the rungs also hold what
    other drivers of the study store while this one runs."""
    from ray.tune.schedulers import FIFOScheduler  # noqa: PLC0415

    if ctx.spec.search.scheduler == "none":
        return FIFOScheduler()
    try:
        from paretune.search.algorithms.schedulers import make_trial_scheduler  # type: ignore[attr-defined]  # noqa: PLC0415
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.schedulers":
            raise
        log.warning(
            "scheduler %r is not available yet; every trial trains to max_steps",
            ctx.spec.search.scheduler,
        )
        ctx.store.log_event(
            ctx.study_id,
            "scheduler_fallback",
            {"wanted": ctx.spec.search.scheduler, "used": "fifo"},
        )
        return FIFOScheduler()
    if history is None:
        history = rung_history(ctx.store, ctx.study_id)
    scheduler = make_trial_scheduler(ctx.spec, on_decision, history)
    follow = getattr(scheduler, "follow", None)  # a scheduler put in its place may lack it
    if shared is not None and follow is not None:
        follow(shared)
    return scheduler


# -- stopping ----------------------------------------------------------------------------------


class StopSignal:
    """Why the driver should stop (Ctrl-C, ``paretune stop``), shared with Tune's stopper."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()


def _make_stopper(stop: StopSignal) -> Any:
    from ray.tune import Stopper  # noqa: PLC0415

    class _Stopper(Stopper):
        def __init__(self, signal_: StopSignal) -> None:
            self.signal: StopSignal | None = signal_

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.signal is not None and self.signal.event.is_set()

        def __getstate__(self) -> dict[str, Any]:
            return {"signal": None}

    return _Stopper(stop)


@contextmanager
def _sigint_stops(stop: StopSignal, core: SearchCore, enabled: bool) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop cleanly, Tune's own handler off. Second: KeyboardInterrupt."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.event.is_set():
            raise KeyboardInterrupt
        stop.set("interrupted")
        core.stopping = "interrupted"
        log.warning("interrupted: stopping the running trials (Ctrl-C again to quit at once)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if old_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env


# -- Ray ---------------------------------------------------------------------------------------


def run_dir(spec: StudySpec, override: str | None = None) -> Path:
    return Path(override or spec.artifacts or os.path.join("runs", spec.study)).absolute()


TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"
TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)


@contextmanager
def _quiet_default_token_notice() -> Iterator[None]:
    """Drop the notice Ray logs on every local start with RAY_AUTH_MODE unset.

    Ray then turns token authentication on, which is what a local study should run with; the
    notice only says so, before every ``paretune submit``. Every other message, the warning that
    authentication is *off* included, still shows.
    """
    logger, notice = logging.getLogger(TOKEN_LOGGER), _DropTokenNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Start Ray here (or join ``address``) unless this process already holds a Ray session."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        kwargs["address"] = address
    elif os.environ.get("RAY_ADDRESS"):
        pass  # inside a Ray Job: join the cluster that runs it
    else:
        kwargs["address"] = "local"  # never join a stray `ray start` on this machine
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    try:
        with _quiet_default_token_notice():
            ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise UserError(
            f"cannot start {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _trial_dirname(trial: Any) -> str:
    return f"trial-{trial.config.get(TRIAL_KEY, 'x')}-{trial.trial_id}"


def _trial_name(trial: Any) -> str:
    return f"trial-{trial.config.get(TRIAL_KEY, 'x')}"


def _fit(
    ctx: StudyContext,
    core: SearchCore,
    trial_fn: TrialFn | str | None,
    options: DriverOptions,
    stop: StopSignal,
) -> None:
    from ray import tune  # noqa: PLC0415

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune tables on the console: ours is live
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    spec = ctx.spec
    directory = run_dir(spec, options.run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    history, core.start_history = core.start_history, None  # read once, when the core started
    scheduler = trial_scheduler(ctx, DecisionLog(ctx.store, ctx.study_id), history, core.shared)
    tuner = tune.Tuner(
        make_trainable(spec, trial_fn, artifacts_dir=str(directory)),
        tune_config=tune.TuneConfig(
            search_alg=make_ray_searcher(core),
            scheduler=scheduler,
            num_samples=-1,  # the searcher says when the budget is spent
            max_concurrent_trials=spec.search.max_concurrent,
            reuse_actors=options.reuse_actors,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
            storage_path=str(directory),
            stop=_make_stopper(stop),
            callbacks=[make_error_callback(core), make_retry_callback(core)],
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            verbose=0,
            log_to_file=True,
        ),
    )
    tuner.fit()


# -- the driver --------------------------------------------------------------------------------


def run_study(
    ctx: StudyContext,
    *,
    trial_fn: TrialFn | str | None = None,
    options: DriverOptions | None = None,
    progress: ProgressState | None = None,
) -> RunOutcome:
    """Run the study until its budget is spent, it is stopped, or it gives up.

    ``trial_fn`` is the trial function (default: ``paretune.trainers.train_trial``, imported in the
    Ray workers only). Raises :class:`StudyBusyError` when another live driver holds the study
    and ``options.join`` is off.
    """
    options = options or DriverOptions()
    store, name = ctx.store, ctx.name
    driver_id = new_driver_id()
    # orphans are recovered only when no other driver is alive: a joined one owns its trials
    alone = not driver_is_live(store.get_study(name), options.stale_after_s)
    claim(store, name, driver_id, join=options.join, stale_after_s=options.stale_after_s)
    stop = StopSignal()
    core = SearchCore(ctx, driver_id=driver_id, progress=progress)

    def on_stop_request() -> None:
        stop.set("stopped")
        core.stopping = core.stopping or "stopped"

    beat = Heartbeat(store, name, driver_id, options.heartbeat_s, on_stop_request).start()
    store.set_status(name, "running")
    store.log_event(
        ctx.study_id,
        "driver_started",
        {
            "driver": driver_id,
            "host": socket.gethostname(),
            "join": options.join,
            "address": options.address,
        },
    )
    outcome: RunOutcome | None = None
    try:
        if alone:
            recovered = recover_orphans(ctx)
            if any(recovered.values()):
                store.log_event(ctx.study_id, "resumed", recovered)
                log.info("study %s: recovered %s", name, recovered)
            continue_front(ctx)  # after `resume --max-steps`: the old front goes on to max_steps
        budget = core.budget()
        if budget.can_ask:
            with (
                _sigint_stops(stop, core, options.handle_sigint),
                ray_session(options.address, options.num_cpus),
            ):
                try:
                    _fit(ctx, core, trial_fn, options, stop)
                except KeyboardInterrupt:
                    stop.set("interrupted")
                    core.stopping = "interrupted"
                    raise
                except Exception:
                    if core.fatal is not None:  # Tune wrapped the store's own error: say that
                        raise core.fatal from None
                    if stop.reason is None:
                        raise
                    log.warning("Ray stopped with an error after %s", stop.reason, exc_info=True)
        outcome = _finish(ctx, core, stop)
        return outcome
    except KeyboardInterrupt:
        stop.set("interrupted")
        core.stopping = "interrupted"
        outcome = _finish(ctx, core, stop)
        raise
    except BaseException as e:
        tb = traceback.format_exc()
        if not isinstance(e, UserError):
            log.error("driver of study %s failed:\n%s", name, tb)
        outcome = RunOutcome("failed", f"the driver failed: {type(e).__name__}: {e}")
        try:
            core.interrupt_live("driver failed")
            store.log_event(
                ctx.study_id,
                "driver_failed",
                {"error": f"{type(e).__name__}: {e}", "traceback": tb},
            )
            store.set_status(name, "failed")
        except Exception as err:  # the store itself may be what failed; resume recovers the trials
            log.warning("could not record the failure of study %s: %s", name, _first_line(err))
        raise
    finally:
        beat.stop()
        try:
            store.release_driver(name, driver_id)
            store.log_event(
                ctx.study_id,
                "driver_stopped",
                {"driver": driver_id, "status": outcome.status if outcome else "?"},
            )
        except Exception as err:  # the store went away: the heartbeat goes stale, resume takes over
            log.warning("could not release study %s: %s", name, _first_line(err))


def _first_line(err: BaseException) -> str:
    """One line for a warning: the store's own error is what the user acts on, not its stack."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _finish(ctx: StudyContext, core: SearchCore, stop: StopSignal) -> RunOutcome:
    """Interrupt what still runs, then set the study's status from why the run ended."""
    reason = stop.reason or ("interrupted" if core.stopping == "interrupted" else None)
    core.flush_ray_errors()
    numbers = core.interrupt_live(reason or "run ended")
    budget = core.budget()
    if reason == "interrupted":
        status = "interrupted"
        message = f"interrupted; {budget.used}/{budget.n_trials} trials used; `paretune resume {ctx.name}` goes on"
    elif reason == "stopped":
        status = "stopped"
        message = f"stopped on request; `paretune resume {ctx.name}` goes on"
    elif core.gave_up:
        status = "gave-up"
        message = core.gave_up
    elif budget.can_ask or numbers:
        status = "incomplete"
        message = f"the run ended with {budget.used}/{budget.n_trials} trials used; `paretune resume {ctx.name}` goes on"
    else:
        status = "done"
        message = f"budget of {budget.n_trials} trials spent"
    if numbers:
        ctx.store.log_event(ctx.study_id, "interrupted_run", {"reason": reason, "trials": numbers})
    info = ctx.store.get_study(ctx.name)
    others_alive = (
        info.driver_id is not None
        and info.driver_id != core.driver_id
        and _fresh(info.heartbeat_at)
    )
    if not others_alive:
        ctx.store.set_status(ctx.name, status)
    else:
        status = "busy-elsewhere"
        message = f"this driver is done; another driver still runs study {ctx.name!r}"
    return RunOutcome(status, message, tuple(numbers))


def _fresh(when: datetime | None, within_s: float = STALE_AFTER_S) -> bool:
    return when is not None and (utcnow() - when).total_seconds() < within_s


def wait_for_status(store: StudyStore, name: str, statuses: set[str], timeout_s: float) -> str:
    """Poll the study's status until it is one of ``statuses`` (tests and ``paretune stop --wait``)."""
    deadline = time.monotonic() + timeout_s
    status = store.get_study(name).status
    while status not in statuses and time.monotonic() < deadline:
        time.sleep(0.5)
        status = store.get_study(name).status
    return status
