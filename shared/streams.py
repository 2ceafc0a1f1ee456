"""The one consumer shape used by every service.

Create the group at start; XREADGROUP in batches; apply each message together with an
inbox row keyed on `event_id` (so a redelivery changes nothing); XACK after commit;
XAUTOCLAIM messages a dead or failing consumer left idle; after `max_deliveries` failures
move the message to the dead-letter stream.

A batch of new messages is applied in one transaction (one commit, one XACK): under load
that is what keeps a consumer's cost per message small. If anything in it fails, the batch
is rolled back and its messages are applied again one transaction each, so one bad message
costs its neighbours nothing but a second try. Before a batch's handlers run, an optional
`prepare` hook sees its new events at once: it may lock and load in one query the rows that
the handlers would otherwise select one event at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import unit_of_work
from shared.events import DEAD_LETTER_STREAM, Envelope
from shared.lifecycle import sleep_or_stop
from shared.logging import correlation_id
from shared.outbox import InboxMixin

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, Envelope, str], Awaitable[None]]
"""Applies one event inside the consumer's transaction; gets the session, envelope, stream."""

Prepare = Callable[[AsyncSession, list[Envelope]], Awaitable[None]]
"""Before a batch's handlers run, in its transaction, with its new events: may lock and load
at once the rows they will touch (one query instead of one per event). The handlers must not
rely on it: a single message is applied without it."""

StreamMessage = tuple[str, dict[str, str]]


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class StreamConsumer:
    def __init__(
        self,
        *,
        redis: Redis,
        sessionmaker: async_sessionmaker[AsyncSession],
        inbox_model: type[InboxMixin],
        group: str,
        consumer: str,
        streams: Sequence[str],
        handler: Handler,
        batch_size: int = 64,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        dead_letter_stream: str = DEAD_LETTER_STREAM,
        on_duplicate: Handler | None = None,
        prepare: Prepare | None = None,
        linger_ms: int = 20,
    ) -> None:
        self._redis = redis
        self._sessionmaker = sessionmaker
        self._inbox = inbox_model
        self.group = group
        self.consumer = consumer
        self.streams = list(streams)
        self._handler = handler
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._dead_letter_stream = dead_letter_stream
        # Called, in its own transaction, for an event already applied: e.g. to answer a
        # redelivered request again when the first answer may have been lost.
        self._on_duplicate = on_duplicate
        self._prepare = prepare
        # After a short batch, wait a moment before reading again, so that under load the
        # next batch holds many messages (one transaction for all) instead of one or two.
        self._linger = linger_ms / 1000
        self.stats = ConsumerStats()

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                # "0": a group made after messages were added still sees them all.
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_groups()
        log.info("consumer_started", group=self.group, consumer=self.consumer, streams=self.streams)
        # Messages this consumer (same stable name) took before a crash come first.
        await self._drain_own_pending()
        loop = asyncio.get_running_loop()
        next_claim = loop.time()
        while not stop.is_set():
            try:
                if loop.time() >= next_claim:
                    await self.reclaim_idle()
                    next_claim = loop.time() + max(self._claim_idle_ms / 4000, 0.5)
                read = await self.read_batch(block_ms=self._block_ms)
                if 0 < read < self._batch_size and self._linger:
                    await sleep_or_stop(stop, self._linger)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group vanished (Redis restarted empty, FLUSHALL): make
                    # them again; the producers' end-to-end acknowledgement resends.
                    log.warning("consumer_group_missing", group=self.group)
                    await self.ensure_groups()
                else:
                    log.error("consumer_redis_error", error=str(exc))
                    await sleep_or_stop(stop, 1.0)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("consumer_redis_unavailable", error=repr(exc))
                await sleep_or_stop(stop, 1.0)
        log.info("consumer_stopped", group=self.group, consumer=self.consumer)

    async def read_batch(self, *, block_ms: int | None = None) -> int:
        """Read and apply one batch of new messages; returns how many were read."""
        # decode_responses=True: ids and fields are str (redis-py's types do not say so).
        response: Any = await self._redis.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, ">"),
            count=self._batch_size,
            block=block_ms,
        )
        count = 0
        for stream, messages in response or []:
            count += len(messages)
            if len(messages) > 1 and await self._process_together(stream, messages):
                continue
            for message_id, fields in messages:
                await self._process(stream, message_id, fields, deliveries=1)
        return count

    async def _process_together(self, stream: str, messages: list[StreamMessage]) -> bool:
        """Apply a batch in one transaction and acknowledge it at once. Returns False, with
        nothing applied, if the batch must be taken one message at a time instead."""
        try:
            envelopes = [Envelope.from_fields(fields) for _, fields in messages]
        except (KeyError, ValidationError, ValueError):
            return False  # an unreadable message: the one-by-one path dead-letters it
        try:
            applied = await self._apply_many(envelopes, stream)
        except Exception as exc:
            log.info(
                "batch_failed_retrying_singly", stream=stream, size=len(messages), error=repr(exc)
            )
            return False
        await self._redis.xack(stream, self.group, *[message_id for message_id, _ in messages])
        for envelope, was_applied in zip(envelopes, applied, strict=True):
            if was_applied:
                self.stats.processed += 1
                self.stats.by_type[envelope.type] = self.stats.by_type.get(envelope.type, 0) + 1
            else:
                self.stats.duplicates += 1
        return True

    async def _apply_many(self, envelopes: list[Envelope], stream: str) -> list[bool]:
        inbox = self._inbox.__table__  # type: ignore[attr-defined]
        # Not unit_of_work: an error that keeps its changes must not commit half a batch
        # (the inbox rows of the messages after it would then mark them done).
        async with self._sessionmaker() as session:
            try:
                rows = [{"consumer_group": self.group, "event_id": e.event_id} for e in envelopes]
                new = set(
                    (
                        await session.scalars(
                            insert(inbox)
                            .values(rows)
                            .on_conflict_do_nothing()
                            .returning(inbox.c.event_id)
                        )
                    ).all()
                )
                firsts: list[bool] = []
                for envelope in envelopes:
                    firsts.append(envelope.event_id in new)
                    new.discard(envelope.event_id)  # a second copy in the batch is a duplicate
                fresh = [e for e, first in zip(envelopes, firsts, strict=True) if first]
                if self._prepare is not None and fresh:
                    await self._prepare(session, fresh)
                for envelope, first in zip(envelopes, firsts, strict=True):
                    token = correlation_id.set(envelope.correlation_id)
                    try:
                        if first:
                            await self._handler(session, envelope, stream)
                        elif self._on_duplicate is not None:
                            await self._on_duplicate(session, envelope, stream)
                    finally:
                        correlation_id.reset(token)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
        return firsts

    async def _drain_own_pending(self) -> None:
        for stream in self.streams:
            while True:
                response: Any = await self._redis.xreadgroup(
                    self.group, self.consumer, {stream: "0"}, count=self._batch_size
                )
                messages = response[0][1] if response else []
                live = [(mid, fields) for mid, fields in messages if fields]
                for message_id, fields in live:
                    await self._process(stream, message_id, fields, deliveries=None)
                # Entries trimmed from the stream come back with no fields: just ack them.
                for message_id, fields in messages:
                    if not fields:
                        await self._redis.xack(stream, self.group, message_id)
                if len(messages) < self._batch_size:
                    break

    async def reclaim_idle(self) -> int:
        """Take over messages idle longer than the claim timeout (a crashed consumer's, or ones
        whose processing failed) and apply them again."""
        total = 0
        for stream in self.streams:
            start = "0-0"
            while True:
                result: Any = await self._redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    min_idle_time=self._claim_idle_ms,
                    start_id=start,
                    count=self._batch_size,
                )
                start, messages = result[0], result[1]
                if messages:
                    counts = await self._delivery_counts(stream, messages)
                    for message_id, fields in messages:
                        if fields is None:
                            continue
                        total += 1
                        await self._process(
                            stream, message_id, fields, deliveries=counts.get(message_id)
                        )
                if start in ("0-0", b"0-0"):
                    break
        self.stats.reclaimed += total
        return total

    async def _delivery_counts(
        self, stream: str, messages: list[tuple[str, dict[str, str]]]
    ) -> dict[str, int]:
        ids = [mid for mid, _ in messages]
        pending: Any = await self._redis.xpending_range(
            stream,
            self.group,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + 10,
            consumername=self.consumer,
        )
        return {p["message_id"]: int(p["times_delivered"]) for p in pending}

    async def _process(
        self, stream: str, message_id: str, fields: dict[str, str], *, deliveries: int | None
    ) -> None:
        try:
            envelope = Envelope.from_fields(fields)
        except (KeyError, ValidationError, ValueError) as exc:
            await self._dead_letter(stream, message_id, fields, f"unreadable: {exc}")
            return
        token = correlation_id.set(envelope.correlation_id)
        try:
            applied = await self._apply(envelope, stream)
        except Exception as exc:
            self.stats.failed += 1
            log.warning(
                "message_failed",
                stream=stream,
                message_id=message_id,
                event_type=envelope.type,
                event_id=str(envelope.event_id),
                deliveries=deliveries,
                error=repr(exc),
            )
            if deliveries is not None and deliveries >= self._max_deliveries:
                await self._dead_letter(stream, message_id, fields, repr(exc))
            # Otherwise it stays pending; reclaim_idle retries it after the idle timeout.
            return
        finally:
            correlation_id.reset(token)
        await self._redis.xack(stream, self.group, message_id)
        if applied:
            self.stats.processed += 1
            self.stats.by_type[envelope.type] = self.stats.by_type.get(envelope.type, 0) + 1
        else:
            self.stats.duplicates += 1

    async def _apply(self, envelope: Envelope, stream: str) -> bool:
        async with unit_of_work(self._sessionmaker) as session:
            inserted = await session.scalar(
                insert(self._inbox.__table__)  # type: ignore[attr-defined]
                .values(consumer_group=self.group, event_id=envelope.event_id)
                .on_conflict_do_nothing()
                .returning(self._inbox.event_id)
            )
            if inserted is None:
                if self._on_duplicate is not None:
                    await self._on_duplicate(session, envelope, stream)
                return False
            await self._handler(session, envelope, stream)
        return True

    async def _dead_letter(
        self, stream: str, message_id: str, fields: dict[str, str], error: str
    ) -> None:
        await self._redis.xadd(
            self._dead_letter_stream,
            {
                "stream": stream,
                "message_id": message_id,
                "group": self.group,
                "error": error[:2000],
                "fields": json.dumps(fields, ensure_ascii=False),
            },
        )
        await self._redis.xack(stream, self.group, message_id)
        self.stats.dead_lettered += 1
        log.error("message_dead_lettered", stream=stream, message_id=message_id, group=self.group)
