"""The study store: Optuna's RDB tables, untouched, plus paretune's own tables beside them.

paretune's tables (SQLAlchemy 2.0, versioned by ``paretune_meta.schema_version``):

- ``paretune_studies``: the spec (YAML and hash), status, and the driver heartbeat;
- ``paretune_metrics``: every metric of every trial at every reported step;
- ``paretune_events``: scheduler decisions, failures, resumes, which host ran what;
- ``paretune_hypervolume``: the hypervolume after each completed trial.

The same URL serves both: ``optuna.load_study(study_name=..., storage=URL)`` works on a paretune
database as it is.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from paretune.search.store.urls import (
    StorageError,
    mask_text,
    mask_url,
    resolve_storage,
)
from paretune.spaces.errors import UserError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RETRAINED = "retrained"  # the event ``export --retrain`` logs: a trial's test-split figures
CONNECT_TIMEOUT_S = 5
RETRY_FOR_S = 60.0  # how long a store call waits for the database to come back (a restart)
T = TypeVar("T")

# Errors that a moment later may not repeat: the server restarting or dropping the connection,
# a locked SQLite file. A read-only or full database is not among them: it fails at once.
_TRANSIENT = re.compile(
    r"database is locked|connection (refused|reset|timed out|is (closed|lost|bad))|"
    r"connection to server|could not connect|server closed the connection|"
    r"terminating connection|the database system is (starting up|shutting down|in recovery)|"
    r"consuming input failed|no connection to the server|SSL SYSCALL|broken pipe|"
    r"server conn crashed|cannot connect",
    re.IGNORECASE,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, each once."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_transient(exc: BaseException) -> bool:
    """True for a database error worth retrying (see ``_TRANSIENT``), looking down the chain."""
    return any(
        (isinstance(e, DBAPIError) and e.connection_invalidated) or _TRANSIENT.search(str(e))
        for e in _chain(exc)
    )


# Another process creating the same tables at the same moment. PostgreSQL's CREATE TABLE checks
# for the name before it inserts the table's type row, so two concurrent creators (a driver
# starting and a dashboard or ``status`` opening the same fresh database) collide on that row;
# the loser only has to look again. Optuna then stamps its schema revision after checking that
# none is stamped, so two fresh openers can also both insert that row: the second one's insert fails
# on the row's key, and the revision it wanted is there.
_CONCURRENT_CREATE = re.compile(
    r"pg_type_typname_nsp_index|pg_class_relname_nsp_index|(relation|type|index) \S+ already exists|"
    r"alembic_version_pkc|alembic_version\.version_num",
    re.IGNORECASE,
)
SCHEMA_ATTEMPTS = 5


def creating_schema(call: Callable[[], T], masked_url: str) -> T:
    """Run ``call``, which creates tables; again when a concurrent creator beat it to one."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return call()
        except Exception as e:
            if attempt == SCHEMA_ATTEMPTS or not any(
                _CONCURRENT_CREATE.search(str(c)) for c in _chain(e)
            ):
                raise
            log.info("storage %s: another process created the tables too; again", masked_url)
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def root_message(exc: BaseException) -> str:
    """The first line of the innermost database error (``database or disk is full``)."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not c for c in chain):
        chain.append(e)
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    for e in reversed(chain):
        text = str(e).strip()
        if text and text != "()":
            return text.splitlines()[0]
    return type(exc).__name__


def retrying(
    call: Callable[[], T], what: str, masked_url: str, retry_for_s: float | None = None
) -> T:
    """Run ``call``; on a transient database error retry with backoff for up to ``RETRY_FOR_S``."""
    deadline = time.monotonic() + (RETRY_FOR_S if retry_for_s is None else retry_for_s)
    delay = 0.2
    while True:
        try:
            return call()
        except Exception as e:
            if not is_transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "storage %s: %s failed (%s); retrying in %.1f s",
                masked_url,
                what,
                mask_text(root_message(e), None),
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _retried(method: Callable[..., T]) -> Callable[..., T]:
    """A :class:`StudyStore` method retried on transient errors (:func:`retrying`)."""

    @functools.wraps(method)
    def wrapper(self: StudyStore, *args: Any, **kwargs: Any) -> T:
        return retrying(lambda: method(self, *args, **kwargs), method.__name__, self.masked_url)

    return wrapper


# Optuna's RDBStorage calls the searcher and the store make; each is retried like the store's own.
_OPTUNA_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
    "get_n_trials",
)


@functools.cache
def _retrying_rdb_class() -> type:
    """``RDBStorage`` whose calls retry transient errors and turn lasting ones into one line."""
    import optuna  # noqa: PLC0415

    base = optuna.storages.RDBStorage

    def wrap(name: str) -> Callable[..., Any]:
        method = getattr(base, name)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            masked = getattr(self, "paretune_masked_url", "storage")
            try:
                return retrying(lambda: method(self, *args, **kwargs), name, masked)
            except (optuna.exceptions.StorageInternalError, DBAPIError) as e:
                raise StorageError(
                    f"storage {masked} failed: {mask_text(root_message(e), self.url)}"
                ) from None

        return call

    attrs = {n: wrap(n) for n in _OPTUNA_CALLS if hasattr(base, n)}
    cls = type("RetryingRDBStorage", (base,), {**attrs, "__module__": __name__})
    return cls


def __getattr__(name: str) -> Any:  # pickle finds RetryingRDBStorage here
    if name == "RetryingRDBStorage":
        return _retrying_rdb_class()
    raise AttributeError(name)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "paretune_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class StudyRow(Base):
    __tablename__ = "paretune_studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, index=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="created")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    n_trials: Mapped[int] = mapped_column(Integer, default=0)  # the budget, raised by resume
    max_steps: Mapped[int] = mapped_column(Integer, default=0)  # the top fidelity
    driver_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    driver_host: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cluster: Mapped[str | None] = mapped_column(String(512), nullable=True)


class MetricRow(Base):
    __tablename__ = "paretune_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("paretune_studies.id", ondelete="CASCADE"))
    trial_number: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (
        Index("ix_paretune_metrics_trial", "study_id", "trial_number", "step"),
        Index("ix_paretune_metrics_name", "study_id", "name", "step"),
    )


class EventRow(Base):
    __tablename__ = "paretune_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("paretune_studies.id", ondelete="CASCADE"))
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_paretune_events_study", "study_id", "trial_number", "kind"),)


class HypervolumeRow(Base):
    __tablename__ = "paretune_hypervolume"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("paretune_studies.id", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    n_complete: Mapped[int] = mapped_column(Integer)
    compute_steps: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_paretune_hv_study", "study_id", "n_complete"),)


class UnknownStudyError(UserError):
    """No study of that name in the store."""


@dataclass(frozen=True)
class StudyInfo:
    """A study's paretune row, detached from the session."""

    id: int
    name: str
    spec_yaml: str
    spec_json: str
    spec_hash: str
    status: str
    created_at: datetime
    updated_at: datetime
    n_trials: int
    max_steps: int
    driver_id: str | None
    driver_host: str | None
    heartbeat_at: datetime | None
    job_id: str | None
    cluster: str | None

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.spec_json)


def _info(row: StudyRow) -> StudyInfo:
    return StudyInfo(**{k: getattr(row, k) for k in StudyInfo.__dataclass_fields__})


def engine_kwargs(url: str) -> dict[str, Any]:
    """Engine options for paretune's engine and Optuna's: timeouts, pre-ping, SQLite WAL."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {
        "pool_pre_ping": True,
        "pool_recycle": 300,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
    }


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - driver hook
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
        except Exception:  # read-only files cannot switch mode; reads still work
            pass
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a commit no longer waits on fsync
        cur.close()


def _sqlite_synchronous_normal(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - driver hook
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class StudyStore:
    """paretune's tables on one database; also hands out the Optuna storage on the same URL."""

    def __init__(
        self, url: str | None = None, *, create: bool = True, read_only: bool = False
    ) -> None:
        self.url = resolve_storage(url)
        self.masked_url = mask_url(self.url)
        self.read_only = read_only
        if self.url.startswith("sqlite:///"):
            self._check_sqlite_path(create and not read_only)
        try:
            self.engine = create_engine(self.url, **engine_kwargs(self.url))
        except (SQLAlchemyError, ImportError, ValueError) as e:
            raise StorageError(
                f"malformed storage URL {self.masked_url}: {mask_text(e, self.url)}"
            ) from None
        if self.url.startswith("sqlite"):
            _sqlite_pragmas(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._optuna_storage: Any = None
        creating_schema(
            lambda: self._ensure_schema(create=create and not read_only), self.masked_url
        )

    # -- connection and schema -------------------------------------------------------------

    def _check_sqlite_path(self, create: bool) -> None:
        path = self.url[len("sqlite:///") :]
        if path in ("", ":memory:"):
            return
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StorageError(f"storage {self.masked_url}: directory {directory} does not exist")
        if not create and not os.path.exists(path):
            raise StorageError(f"storage {self.masked_url}: no such database file")
        if create and not os.access(path if os.path.exists(path) else directory, os.W_OK):
            what = "database file" if os.path.exists(path) else "directory"
            raise StorageError(
                f"storage {self.masked_url}: the {what} is read-only; paretune needs to write it"
            )

    def _ensure_schema(self, create: bool) -> None:
        try:
            with self.engine.connect() as conn:
                if create:
                    Base.metadata.create_all(conn)
                    conn.commit()
                stored = conn.execute(
                    select(Meta.value).where(Meta.key == "schema_version")
                ).scalar()
                if stored is None and create:
                    try:
                        conn.execute(
                            Meta.__table__.insert().values(
                                key="schema_version", value=str(SCHEMA_VERSION)
                            )
                        )
                        conn.commit()
                    except IntegrityError:  # a second driver created it at the same moment
                        conn.rollback()
                    stored = str(SCHEMA_VERSION)
        except OperationalError as e:
            reason = mask_text(str(e.orig).strip().splitlines()[0] if e.orig else e, self.url)
            if "no such table" in reason and not create:
                raise StorageError(f"storage {self.masked_url} holds no paretune studies") from None
            raise StorageError(f"cannot reach storage {self.masked_url}: {reason}") from None
        except SQLAlchemyError as e:
            raise StorageError(
                f"storage {self.masked_url} failed: {mask_text(e, self.url)}"
            ) from None
        if stored is not None and int(stored) > SCHEMA_VERSION:
            raise StorageError(
                f"storage {self.masked_url} has paretune schema v{stored}, newer than this paretune "
                f"(v{SCHEMA_VERSION}); upgrade paretune to use it"
            )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except IntegrityError:
                s.rollback()
                raise
            except DBAPIError as e:  # the connection or the database failed (down, read-only, full)
                try:
                    s.rollback()
                except SQLAlchemyError:
                    pass
                raise StorageError(
                    f"storage {self.masked_url} failed: {mask_text(root_message(e), self.url)}"
                ) from e
            except Exception:
                s.rollback()
                raise

    def optuna_storage(self) -> Any:
        """Optuna's RDBStorage on the same database (created on first use)."""
        if self._optuna_storage is None:
            try:
                self._optuna_storage = creating_schema(
                    lambda: _retrying_rdb_class()(self.url, engine_kwargs=engine_kwargs(self.url)),
                    self.masked_url,
                )
                self._optuna_storage.paretune_masked_url = self.masked_url
            except Exception as e:
                raise StorageError(f"storage {self.masked_url}: {mask_text(e, self.url)}") from None
            if self.url.startswith("sqlite"):  # Optuna's engine: fast commits too (WAL is per file)
                _sqlite_synchronous_normal(self._optuna_storage.engine)
                self._optuna_storage.engine.dispose()
        return self._optuna_storage

    def dispose(self) -> None:
        self.engine.dispose()

    # -- studies ---------------------------------------------------------------------------

    def create_study(
        self,
        name: str,
        spec_yaml: str,
        spec_json: str,
        spec_hash: str,
        n_trials: int,
        max_steps: int,
    ) -> StudyInfo:
        with self.session() as s:
            row = StudyRow(
                name=name,
                spec_yaml=mask_text(spec_yaml, self.url),  # a spec's storage: URL keeps no password
                spec_json=spec_json,
                spec_hash=spec_hash,
                n_trials=n_trials,
                max_steps=max_steps,
                status="created",
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                raise UserError(f"study {name!r} already exists") from None
            return _info(row)

    @_retried
    def find_study(self, name: str) -> StudyInfo | None:
        with self.session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            return _info(row) if row else None

    def get_study(self, name: str) -> StudyInfo:
        info = self.find_study(name)
        if info is None:
            known = self.study_names()
            hint = (
                f"; studies here: {', '.join(known[:10])}"
                if known
                else "; this storage holds no studies"
            )
            raise UnknownStudyError(f"unknown study {name!r} in {self.masked_url}{hint}")
        return info

    @_retried
    def study_names(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(StudyRow.name).order_by(StudyRow.created_at)))

    @_retried
    def list_studies(self) -> list[StudyInfo]:
        with self.session() as s:
            return [_info(r) for r in s.scalars(select(StudyRow).order_by(StudyRow.created_at))]

    @_retried
    def update_study(self, name: str, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        with self.session() as s:
            s.execute(update(StudyRow).where(StudyRow.name == name).values(**fields))

    def set_status(self, name: str, status: str) -> None:
        self.update_study(name, status=status)

    def delete_study(self, name: str) -> None:
        """Delete the paretune rows and the Optuna study of that name."""
        info = self.get_study(name)
        with self.session() as s:
            for table in (MetricRow, EventRow, HypervolumeRow):
                s.execute(delete(table).where(table.study_id == info.id))
            s.execute(delete(StudyRow).where(StudyRow.id == info.id))
        import optuna  # noqa: PLC0415

        try:
            optuna.delete_study(study_name=name, storage=self.optuna_storage())
        except KeyError:
            pass

    # -- driver heartbeat ------------------------------------------------------------------

    @_retried
    def claim_driver(self, name: str, driver_id: str, *, join: bool, stale_after_s: float) -> bool:
        """Take the study for this driver. False if another live driver holds it and join is off."""
        now = utcnow()
        with self.session() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name).with_for_update())
            if row is None:
                raise UnknownStudyError(f"unknown study {name!r}")
            live = (
                row.driver_id not in (None, driver_id)
                and row.heartbeat_at is not None
                and (now - row.heartbeat_at).total_seconds() < stale_after_s
            )
            if live and not join:
                return False
            row.driver_id, row.driver_host, row.heartbeat_at = driver_id, socket.gethostname(), now
            row.updated_at = now
            return True

    @_retried
    def heartbeat(self, name: str, driver_id: str) -> None:
        with self.session() as s:
            s.execute(
                update(StudyRow)
                .where(StudyRow.name == name, StudyRow.driver_id == driver_id)
                .values(heartbeat_at=utcnow())
            )

    @_retried
    def release_driver(self, name: str, driver_id: str) -> None:
        with self.session() as s:
            s.execute(
                update(StudyRow)
                .where(StudyRow.name == name, StudyRow.driver_id == driver_id)
                .values(driver_id=None, heartbeat_at=None, updated_at=utcnow())
            )

    # -- metrics, events, hypervolume ------------------------------------------------------

    @_retried
    def record_metrics(
        self, study_id: int, trial_number: int, step: int, metrics: dict[str, float]
    ) -> None:
        now = utcnow()
        rows = [
            {
                "study_id": study_id,
                "trial_number": trial_number,
                "step": int(step),
                "name": k,
                "value": float(v),
                "time": now,
            }
            for k, v in metrics.items()
            if v is not None
        ]
        if not rows:
            return
        with self.session() as s:
            s.execute(MetricRow.__table__.insert(), rows)
            s.execute(update(StudyRow).where(StudyRow.id == study_id).values(updated_at=now))

    @_retried
    def metrics(
        self, study_id: int, trial_number: int | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        q = select(
            MetricRow.trial_number, MetricRow.step, MetricRow.name, MetricRow.value, MetricRow.time
        ).where(MetricRow.study_id == study_id)
        if trial_number is not None:
            q = q.where(MetricRow.trial_number == trial_number)
        if name is not None:
            q = q.where(MetricRow.name == name)
        q = q.order_by(MetricRow.trial_number, MetricRow.step, MetricRow.id)
        with self.session() as s:
            return [dict(r._mapping) for r in s.execute(q)]

    @_retried
    def metrics_after(self, study_id: int, after_id: int) -> list[dict[str, Any]]:
        """Metric rows with an id above ``after_id`` (with their ``id``), in id order."""
        q = (
            select(
                MetricRow.id,
                MetricRow.trial_number,
                MetricRow.step,
                MetricRow.name,
                MetricRow.value,
            )
            .where(MetricRow.study_id == study_id, MetricRow.id > after_id)
            .order_by(MetricRow.id)
        )
        with self.session() as s:
            return [dict(r._mapping) for r in s.execute(q)]

    @_retried
    def max_metric_id(self, study_id: int) -> int:
        """The highest metric row id of the study (0 when it has none)."""
        q = select(func.max(MetricRow.id)).where(MetricRow.study_id == study_id)
        with self.session() as s:
            return int(s.execute(q).scalar() or 0)

    @_retried
    def log_event(
        self,
        study_id: int,
        kind: str,
        detail: dict[str, Any] | None = None,
        trial_number: int | None = None,
    ) -> None:
        with self.session() as s:
            s.add(
                EventRow(
                    study_id=study_id, trial_number=trial_number, kind=kind, detail=detail or {}
                )
            )

    @_retried
    def events(
        self, study_id: int, trial_number: int | None = None, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        q = select(EventRow.trial_number, EventRow.time, EventRow.kind, EventRow.detail).where(
            EventRow.study_id == study_id
        )
        if trial_number is not None:
            q = q.where(EventRow.trial_number == trial_number)
        if kinds is not None:
            q = q.where(EventRow.kind.in_(list(kinds)))
        with self.session() as s:
            return [dict(r._mapping) for r in s.execute(q.order_by(EventRow.id))]

    @_retried
    def record_hypervolume(
        self, study_id: int, n_complete: int, compute_steps: int, value: float
    ) -> None:
        with self.session() as s:
            s.add(
                HypervolumeRow(
                    study_id=study_id,
                    n_complete=n_complete,
                    compute_steps=compute_steps,
                    value=float(value),
                )
            )

    @_retried
    def hypervolume_history(self, study_id: int) -> list[dict[str, Any]]:
        q = (
            select(
                HypervolumeRow.time,
                HypervolumeRow.n_complete,
                HypervolumeRow.compute_steps,
                HypervolumeRow.value,
            )
            .where(HypervolumeRow.study_id == study_id)
            .order_by(HypervolumeRow.id)
        )
        with self.session() as s:
            return [dict(r._mapping) for r in s.execute(q)]

    @_retried
    def count_metrics(self, study_id: int) -> int:
        with self.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(MetricRow)
                    .where(MetricRow.study_id == study_id)
                )
                or 0
            )


def open_store(
    url: str | None = None, *, create: bool = True, read_only: bool = False, retries: int = 0
) -> StudyStore:
    """Open (and by default initialise) the store at ``url``; retries cover a server restarting."""
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            return StudyStore(url, create=create, read_only=read_only)
        except StorageError:
            if attempt == retries:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")
