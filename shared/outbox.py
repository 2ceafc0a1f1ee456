"""Transactional outbox: the message is a row written in the same transaction as the state
change it announces; a relay publishes unpublished rows to Redis Streams with XADD.

A relay killed between XADD and marking the row publishes it again: consumers are
idempotent on `event_id`, so that duplicate is harmless.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    String,
    Text,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.db import table_of
from shared.events import Envelope, consumer_groups
from shared.lifecycle import sleep_or_stop
from shared.logging import correlation_id
from shared.retention import trim_consumed

log = structlog.get_logger(__name__)


class OutboxMixin:
    """Columns of a service's `outbox` table."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    stream: Mapped[str] = mapped_column(String(100))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            Index(
                "ix_outbox_unpublished",
                "id",
                postgresql_where=text("published_at IS NULL"),
            ),
        )


class InboxMixin:
    """Events a consumer group has already applied: the key that makes effects idempotent."""

    __tablename__ = "inbox"

    consumer_group: Mapped[str] = mapped_column(String(50), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


def correlated(envelope: Envelope) -> Envelope:
    """The envelope with the request's correlation id, if it carries none of its own."""
    if envelope.correlation_id is None and (cid := correlation_id.get()) is not None:
        return envelope.model_copy(update={"correlation_id": cid})
    return envelope


def _row(stream: str, envelope: Envelope) -> dict[str, Any]:
    return {
        "event_id": envelope.event_id,
        "stream": stream,
        "envelope": envelope.model_dump(mode="json"),
    }


def enqueue(
    session: AsyncSession, model: type[OutboxMixin], stream: str, envelope: Envelope
) -> Envelope:
    """Add the message to the caller's transaction; the relay publishes it after commit."""
    envelope = correlated(envelope)
    session.add(model(**_row(stream, envelope)))
    return envelope


def outbox_insert(model: type[OutboxMixin]) -> str:
    """`INSERT … SELECT * FROM unnest(…)` of the parameters `outbox_columns` gives, as SQL
    to put inside a larger statement (a caller may append a WHERE)."""
    return f"""INSERT INTO {table_of(model).fullname} (event_id, stream, envelope)
        SELECT * FROM unnest(
            CAST(:outbox_event_ids AS uuid[]),
            CAST(:outbox_streams AS varchar[]),
            CAST(:outbox_envelopes AS jsonb[])
        )"""  # noqa: S608 (the table name from the model, values all bound)


def outbox_columns(messages: list[tuple[str, Envelope]]) -> dict[str, list[Any]]:
    """The messages as column arrays (`outbox_event_ids`, `outbox_streams`,
    `outbox_envelopes` as JSON text) for `outbox_insert` inside a larger statement: a hot
    path that writes its state and its messages in one round trip."""
    envelopes = [(stream, correlated(envelope)) for stream, envelope in messages]
    return {
        "outbox_event_ids": [envelope.event_id for _, envelope in envelopes],
        "outbox_streams": [stream for stream, _ in envelopes],
        "outbox_envelopes": [envelope.model_dump_json() for _, envelope in envelopes],
    }


async def republish(
    session: AsyncSession,
    model: type[OutboxMixin],
    stream: str,
    envelope: Envelope,
) -> None:
    """Publish an already-sent message again, with its original event id (so consumers
    see the same event): the retained row is queued again, or written anew if purged."""
    result = await session.execute(
        update(model).where(model.event_id == envelope.event_id).values(published_at=None)
    )
    if not getattr(result, "rowcount", 0):
        enqueue(session, model, stream, envelope)


class OutboxRelay:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        model: type[OutboxMixin],
        batch_size: int = 500,
        listen_dsn: str | None = None,
        retention: timedelta = timedelta(days=7),
        linger_seconds: float = 0.01,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._model = model
        self._batch_size = batch_size
        self._listen_dsn = listen_dsn
        self._retention = retention
        # After a wake-up, let the rows of concurrent commits gather for a moment: under load
        # one batch of dozens costs about what one row alone costs.
        self._linger = linger_seconds
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        schema = model.__table__.schema  # type: ignore[attr-defined]
        self._epoch_key = f"relief:epoch:{schema}"
        table = table_of(model)
        # Built once: the oldest unpublished rows that no other relay holds, marked
        # published and returned (before: a SELECT, then an UPDATE of the ids it found).
        self._take = (
            update(table)
            .where(
                table.c.id.in_(
                    select(table.c.id)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.id)
                    .limit(bindparam("limit"))
                    .with_for_update(skip_locked=True)
                )
            )
            .values(published_at=func.now())
            # The envelope as PostgreSQL prints it: written by us from an Envelope, it goes
            # to Redis as it is, not parsed and validated into one again to be printed.
            .returning(table.c.id, table.c.stream, cast(table.c.envelope, Text))
        )
        self._streams_written: set[str] = set()

    async def check_redis_epoch(self) -> int:
        """Redis keeps a marker of this relay. If it is gone, Redis lost its data (a restart
        without persistence, FLUSHALL): publish every retained row again. Consumers are
        idempotent, so what they had already seen changes nothing; what was lost arrives."""
        if await self._redis.exists(self._epoch_key):
            return 0
        model = self._model
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                update(model)
                .where(
                    model.published_at.is_not(None),
                    model.published_at > func.now() - self._retention,
                )
                .values(published_at=None)
            )
        await self._redis.set(self._epoch_key, datetime.now(UTC).isoformat())
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.warning("redis_data_loss_republishing", rows=count, key=self._epoch_key)
        self._wake.set()
        return count

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        async with self._sessionmaker() as session, session.begin():
            connection = await session.connection()
            # Marked and read in one statement; the XADDs then run before the commit, so
            # if they fail the rows roll back to unpublished.
            rows = sorted((await connection.execute(self._take, {"limit": self._batch_size})).all())
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for _, stream, envelope in rows:  # in the order they were written
                self._streams_written.add(stream)
                pipe.xadd(stream, Envelope.fields_of(envelope))
            await pipe.execute()
        return len(rows)

    async def purge_published(self) -> int:
        model = self._model
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(
                delete(model).where(model.published_at < func.now() - self._retention)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def backlog(self) -> int:
        model = self._model
        async with self._sessionmaker() as session:
            count = await session.scalar(
                select(func.count()).select_from(model).where(model.published_at.is_(None))
            )
        return int(count or 0)

    async def trim_streams(self) -> int:
        """Keep the streams this relay writes to bounded: drop what every group has read."""
        removed = 0
        for stream in sorted(self._streams_written):
            removed += await trim_consumed(self._redis, stream, consumer_groups(stream))
        return removed

    @property
    def channel(self) -> str:
        return notify_channel(self._model.__table__.schema)  # type: ignore[attr-defined]

    async def _ensure_listener(self) -> bool:
        """LISTEN for the outbox trigger's NOTIFY, so an idle relay sleeps instead of polling.
        Returns whether a listener is up; without one the relay polls quickly."""
        if self._listen_dsn is None:
            return False
        if self._listener is not None and not self._listener.is_closed():
            return True
        try:
            self._listener = await asyncpg.connect(self._listen_dsn, timeout=5)
            await self._listener.add_listener(self.channel, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("relay_listen_failed", error=repr(exc))
            self._listener = None
            return False
        self._wake.set()  # rows may have arrived while nobody listened
        return True

    async def _close_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = None

    async def run(self, stop: asyncio.Event) -> None:
        log.info("relay_started", table=str(self._model.__table__))  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        next_epoch_check = loop.time()
        next_trim = loop.time() + 60
        try:
            while not stop.is_set():
                listening = await self._ensure_listener()
                self._wake.clear()
                try:
                    if loop.time() >= next_epoch_check:
                        await self.check_redis_epoch()
                        next_epoch_check = loop.time() + 1.0
                    published = await self.publish_batch()
                    if loop.time() >= next_purge:
                        await self.purge_published()
                        next_purge = loop.time() + 3600
                    if loop.time() >= next_trim:
                        await self.trim_streams()
                        next_trim = loop.time() + 60
                except Exception as exc:
                    log.warning("relay_error", error=repr(exc))
                    await sleep_or_stop(stop, 1.0)
                    continue
                if published < self._batch_size:
                    # Woken by NOTIFY at once; the timeout is only a safety net.
                    await _wait_either(stop, self._wake, 1.0 if listening else 0.05)
                    if self._linger and not stop.is_set():
                        await asyncio.sleep(self._linger)
        finally:
            await self._close_listener()
        log.info("relay_stopped")


def notify_channel(schema: str) -> str:
    """The channel an outbox's insert trigger notifies (see the services' migrations)."""
    return f"relief_outbox_{schema}"


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
