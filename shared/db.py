"""Database plumbing: engine, sessions, the unit of work and the model mixins.

Services and repositories only `flush()`; the unit of work commits once, at the end of a
request (before the response is sent) or of one consumed message.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar, cast, runtime_checkable

from fastapi import Depends, Request
from sqlalchemy import (
    DateTime,
    MetaData,
    Select,
    Table,
    any_,
    bindparam,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, Session, SessionTransaction, mapped_column
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import TextClause

from shared.errors import AppError
from shared.settings import ServiceSettings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the asyncpg driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def plain_url(url: str) -> str:
    """The URL asyncpg itself takes (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def create_engine(settings: ServiceSettings, *, application_name: str) -> AsyncEngine:
    engine = create_async_engine(
        async_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={
            "server_settings": {
                "application_name": application_name,
                # A transaction left open by a bug must not hold a pooled connection forever.
                "idle_in_transaction_session_timeout": "30000",
            },
            "timeout": 5,
        },
    )
    ping_after_idle(engine, settings.db_ping_after_idle_seconds)
    return engine


_IDLE_SINCE = "relief_idle_since"


def ping_after_idle(engine: AsyncEngine, seconds: float) -> None:
    """Ping a pooled connection before use only if it sat idle longer than `seconds`.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and with asyncpg a ping is three
    round trips (BEGIN, an empty query, ROLLBACK): on a submission that was a quarter of
    its trips to the database. A connection in steady use is known to be alive; one that
    sat idle (across a database restart, a failover, a firewall's idle timeout) is checked
    and, if dead, replaced before the request sees it. A connection that dies while in use
    fails that one request (503, `service_unavailable`), and SQLAlchemy then drops the
    pool's older connections too. 0 pings on every checkout.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: object, record: ConnectionPoolEntry, _proxy: object) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since <= seconds:
            return  # new, or in steady use
        try:
            dbapi_connection.ping()  # type: ignore[attr-defined]
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"pooled connection dead after idling: {exc!r}") from exc


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block ends cleanly, roll back otherwise."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except AppError as exc:
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# a success for a transaction that then failed.
DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]

_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def autocommit_engine(engine: AsyncEngine) -> AsyncEngine:
    """`engine`'s pool, its connections committing every statement on its own (no BEGIN, no
    COMMIT: one round trip each), for a request whose writes are one statement: nothing to
    commit or roll back at its end, and a statement that fails leaves nothing written. Not
    for a request that writes twice: its first write would stay if the second failed. Every
    app keeps one as `app.state.autocommit_engine`. The busiest request takes a connection
    of it itself: an ORM session on it, or a generator dependency yielding it, cost 7% and
    5% of its instructions; `session_on` gives a rare path the ORM on it."""
    return engine.execution_options(**_AUTOCOMMIT)


@asynccontextmanager
async def session_on(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """An ORM session on `connection` (an autocommit engine's: each query commits on its
    own), for reads; what it loaded stays readable after the block."""
    async with AsyncSession(bind=connection, expire_on_commit=False, autoflush=False) as session:
        yield session


class DriverStatement:
    """A statement of `text()` sent straight to asyncpg on an autocommit connection, past
    SQLAlchemy's execution layers (compiled-cache lookup, parameter processing, execution
    context, result): for the one statement of the busiest request.
    Compiled once, with asyncpg's positional parameters; asyncpg keeps it prepared.

    Errors keep SQLAlchemy's shape, so the error handlers and the pool see what they see
    elsewhere: a failed statement is run again through SQLAlchemy, which raises it
    translated (and invalidates a dead connection). In autocommit one statement is all or
    nothing, so the failed run wrote nothing and the second is the same statement again;
    should it succeed (a transient error), its result is the answer. On a connection in a
    transaction, where a failed statement aborts what came before, it goes through
    SQLAlchemy from the start."""

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.statement = statement
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    async def scalar(self, connection: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None if there is none)."""
        sync = connection.sync_connection
        options = sync.get_execution_options() if sync is not None else {}
        if options.get("isolation_level") == _AUTOCOMMIT["isolation_level"]:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            if driver is not None:
                try:
                    return await driver.fetchval(self.sql, *[params[n] for n in self.names])
                except Exception:  # noqa: S110 - raised again, translated, just below
                    pass
        return (await connection.execute(self.statement, params)).scalar()


async def database_ready(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


_Model = TypeVar("_Model")


def locked_rows(session: AsyncSession, model: type[_Model]) -> dict[Any, _Model | None]:
    """The rows of `model` this transaction holds locked, by primary key (None: there was no
    such row), kept in `session.info` so they end with the session. A consumer's `prepare`
    fills it for a whole batch in one query; a handler looks here before selecting its row,
    and puts here a row it creates, so a later event of the batch finds it unflushed."""
    rows: dict[Any, _Model | None] = session.info.setdefault(("locked_rows", model), {})
    return rows


def batch_lock(key: InstrumentedAttribute[Any], *options: Any) -> Select[Any]:
    """The statement `lock_batch` runs: the rows whose `key` is one of `:ids`, locked, in
    key order (two batches that share rows lock them in the same order, so they cannot
    deadlock on each other). One array parameter, not IN (...): the same statement,
    prepared once, for any batch size."""
    return (
        select(key.class_)
        .options(*options)
        .where(key == any_(bindparam("ids", type_=ARRAY(key.type))))
        .order_by(key)
        .with_for_update()
    )


async def lock_batch(
    session: AsyncSession,
    statement: Select[Any],
    key: InstrumentedAttribute[Any],
    ids: Iterable[Any],
) -> None:
    """Lock and load a consumer batch's rows in one query (a `batch_lock` statement) into
    `locked_rows`; a key with no row is remembered as None."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    rows = await session.scalars(statement, {"ids": wanted})
    found = {getattr(row, key.key): row for row in rows}
    locked = locked_rows(session, cast(type[Any], key.class_))
    for value in wanted:
        locked[value] = found.get(value)


class DeferredWrite(Protocol):
    """Rows gathered during a transaction and written in one statement when it commits."""

    def write(self, connection: Connection) -> None:
        """Write the gathered rows (synchronous: it runs inside the commit)."""


@runtime_checkable
class WritesItsChanges(Protocol):
    """A deferred write that also writes changes the ORM's flush would have written (in
    its own statement, one round trip fewer): `take_changes` runs before the flush."""

    def take_changes(self, session: Session) -> None:
        """Take the changes over from the session (see `take_changes`)."""


_D = TypeVar("_D", bound=DeferredWrite)
_DEFERRED = "deferred_writes"


def deferred(session: AsyncSession, kind: type[_D]) -> _D:
    """The transaction's `kind` (created on first use), written when the session commits.

    For rows that nothing reads back in the same transaction (audit entries, outbox
    messages, notifications, counter increments): written as one statement at commit
    instead of one statement each. The write runs in `before_commit`, after a flush, so
    rows it refers to are there (a `WritesItsChanges` takes, before the flush, the changes
    it writes itself); a rollback drops what was gathered. No code path can
    forget the write: the commit itself does it. Not inside a savepoint: its rollback could
    not take the rows back."""
    if session.in_nested_transaction():
        raise RuntimeError("deferred writes inside a savepoint are not supported")
    pending: dict[type[Any], Any] = session.info.setdefault(_DEFERRED, {})
    found = pending.get(kind)
    if found is None:
        found = pending[kind] = kind()
    return cast(_D, found)


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    pending: dict[type[Any], DeferredWrite] | None = session.info.pop(_DEFERRED, None)
    if not pending:
        return
    for rows in pending.values():
        if isinstance(rows, WritesItsChanges):
            rows.take_changes(session)
    session.flush()
    connection = session.connection()
    for rows in pending.values():
        rows.write(connection)


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (already written), rolled back or closed
        session.info.pop(_DEFERRED, None)


_PG = PGDialect()  # type: ignore[no-untyped-call]


def param_casts(
    table: Table, columns: Sequence[str], prefix: str = "", *, array: bool = False
) -> str:
    """`CAST(:name AS type)` per column, for a statement that INSERTs parameters through a
    SELECT (not VALUES), where they need their types; with `array`, `type[]`, one array
    parameter per column for `SELECT * FROM unnest(...)`. The types are the columns', so
    they cannot drift from the models. Without a length (VARCHAR, not VARCHAR(64)): a cast
    would cut a value that is too long, where the column itself refuses it."""
    suffix = "[]" if array else ""
    return ", ".join(
        f"CAST(:{prefix}{c} AS "
        f"{re.sub(r'[(].*[)]', '', table.c[c].type.compile(dialect=_PG))}{suffix})"
        for c in columns
    )


def unnest_insert(
    table: Table, columns: Sequence[str], *, computed: Mapping[str, str] | None = None
) -> str:
    """`INSERT INTO table (columns) SELECT * FROM unnest(...)`: any number of rows in one
    statement, prepared once, the rows passed as one array parameter per column (see
    `column_arrays`). `computed`: more columns, with the SQL for their values, e.g.
    `{"next_attempt_at": "now()"}`, the same for every row. A caller may append an ON
    CONFLICT clause or use it inside a CTE."""
    names = ", ".join(columns)
    values = "*"
    if computed:
        names += ", " + ", ".join(computed)
        values += ", " + ", ".join(computed.values())
    return (
        f"INSERT INTO {table.fullname} ({names}) "  # noqa: S608 (names from the model)
        f"SELECT {values} FROM unnest({param_casts(table, columns, array=True)})"
    )


def take_changes(session: Session, obj: object) -> dict[str, Any]:
    """The column values of `obj` (persistent in `session`) that were changed and not yet
    flushed, by column name, now marked as written: the flush leaves the row alone, and
    the caller must write them, in this transaction (`update_cte`). Empty for an object
    that is not in the session or not changed."""
    state = inspect(obj)
    if state.session is not session or not state.persistent or not state.modified:
        return {}
    columns, table = state.mapper.columns, state.mapper.local_table.c
    changes: dict[str, Any] = {}
    for key in set(state.manager).difference(state.unmodified):
        # Only the table's own columns (not a relationship or a query expression: what
        # is left changed, the flush writes as before).
        column = columns.get(key)
        if column is not None and table.get(column.name) is column:
            value = getattr(obj, key)
            changes[column.name] = value
            set_committed_value(obj, key, value)
    return changes


def update_cte(table: Table, columns: Sequence[str], *, name: str, prefix: str) -> str:
    """`name AS (UPDATE table SET … WHERE id = :{prefix}id)`, for a WITH clause (a table
    whose primary key is `id`): the row's `columns` set from the parameters
    `{prefix}{column}` (JSON columns take JSON text), and a column the model updates by
    itself (`onupdate`, e.g. `updated_at`) set as the ORM's flush would set it when not
    among them."""
    sets = [f"{c} = {param_casts(table, [c], prefix)}" for c in columns]
    for column in table.columns:
        onupdate = column.onupdate
        if column.name not in columns and onupdate is not None and hasattr(onupdate, "arg"):
            rendered = onupdate.arg.compile(dialect=_PG)  # e.g. now()
            sets.append(f"{column.name} = {rendered}")
    return (
        f"{name} AS (UPDATE {table.fullname} SET {', '.join(sets)} "  # noqa: S608 (names from the model)
        f"WHERE id = CAST(:{prefix}id AS UUID))"
    )


def column_arrays(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    """Rows (dicts with at least `columns`) as one list per column, for `unnest_insert`."""
    arrays: dict[str, list[Any]] = {name: [] for name in columns}
    for row in rows:
        for name in columns:
            arrays[name].append(row[name])
    return arrays


def table_of(model: type[Any]) -> Table:
    """A mapped class's table, for Core statements built once (typed as the Table it is)."""
    return cast(Table, model.__table__)


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
