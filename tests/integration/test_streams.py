"""The queue's guarantees, on real Redis and PostgreSQL: ordered relay, at-most-once effect
per event, reclaim of a dead consumer's messages, dead letters, and recovery after the
streams vanish."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import InboxEvent, OutboxMessage
from shared.db import plain_url, unit_of_work
from shared.deadletters import list_dead, send_again
from shared.events import DEAD_LETTER_STREAM, Envelope
from shared.outbox import OutboxRelay, enqueue, notify_channel
from shared.retention import trim_consumed
from shared.streams import StreamConsumer
from tests.conftest import Infra
from tests.integration.conftest import stream_entries

STREAM = "relief:test"
GROUP = "tests"


def _envelope(n: int = 0) -> Envelope:
    return Envelope(
        type="test.event", application_id=uuid.uuid4(), department="civil", payload={"n": n}
    )


class Recorder:
    """A handler that remembers what it applied, and can be told to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.applied: list[int] = []
        self.failures = failures

    async def __call__(self, session: AsyncSession, envelope: Envelope, stream: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("handler failed on purpose")
        self.applied.append(int(envelope.payload["n"]))


def _consumer(
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    handler: Recorder,
    *,
    name: str = "c1",
    claim_idle_ms: int = 30_000,
    max_deliveries: int = 5,
) -> StreamConsumer:
    return StreamConsumer(
        redis=redis,
        sessionmaker=sessionmaker,
        inbox_model=InboxEvent,
        group=GROUP,
        consumer=name,
        streams=[STREAM],
        handler=handler,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
    )


async def test_relay_publishes_committed_rows_in_order_once(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with unit_of_work(sessionmaker) as session:
        for n in range(5):
            enqueue(session, OutboxMessage, STREAM, _envelope(n))
    relay = OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=OutboxMessage)
    assert await relay.publish_batch() == 5
    assert await relay.publish_batch() == 0
    assert await relay.backlog() == 0
    entries = await stream_entries(redis, STREAM)
    assert [Envelope.from_fields(f).payload["n"] for _, f in entries] == [0, 1, 2, 3, 4]


async def test_relay_takes_batches_oldest_first_and_a_failed_xadd_publishes_nothing(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with unit_of_work(sessionmaker) as session:
        for n in range(7):
            enqueue(session, OutboxMessage, STREAM, _envelope(n))
    relay = OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=OutboxMessage, batch_size=3)
    await redis.set(STREAM, "not a stream")  # every XADD to it fails (WRONGTYPE)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await relay.publish_batch()
    assert await relay.backlog() == 7  # the rows went back to unpublished
    await redis.delete(STREAM)
    assert [await relay.publish_batch() for _ in range(4)] == [3, 3, 1, 0]
    entries = await stream_entries(redis, STREAM)
    assert [Envelope.from_fields(f).payload["n"] for _, f in entries] == list(range(7))


async def test_a_row_that_is_no_envelope_does_not_stop_the_relay(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The relay passes each row's envelope on as it is, without reading it: a row that is
    somehow not an envelope goes through with the rows around it, and the consumer
    dead-letters it, where a relay that read it would fail on it at every try."""
    async with unit_of_work(sessionmaker) as session:
        enqueue(session, OutboxMessage, STREAM, _envelope(1))
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text(
                "INSERT INTO intake.outbox (event_id, stream, envelope) "
                "VALUES (gen_random_uuid(), :stream, CAST(:envelope AS jsonb))"
            ),
            {"stream": STREAM, "envelope": json.dumps({"type": "test.event", "n": "no ids"})},
        )
    async with unit_of_work(sessionmaker) as session:
        enqueue(session, OutboxMessage, STREAM, _envelope(3))
    relay = OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=OutboxMessage)
    assert await relay.publish_batch() == 3
    assert await relay.backlog() == 0
    recorder = Recorder()
    consumer = _consumer(redis, sessionmaker, recorder)
    await consumer.ensure_groups()
    while await consumer.read_batch(block_ms=None):
        pass
    assert recorder.applied == [1, 3]
    [dead] = await stream_entries(redis, DEAD_LETTER_STREAM)
    assert dead[1]["error"].startswith("unreadable")


async def test_rolled_back_transaction_publishes_nothing(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    try:
        async with unit_of_work(sessionmaker) as session:
            enqueue(session, OutboxMessage, STREAM, _envelope())
            raise RuntimeError("the state change failed")
    except RuntimeError:
        pass
    relay = OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=OutboxMessage)
    assert await relay.publish_batch() == 0
    assert await redis.exists(STREAM) == 0


async def test_a_redelivered_event_is_applied_once(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Recorder()
    consumer = _consumer(redis, sessionmaker, handler)
    await consumer.ensure_groups()
    envelope = _envelope(7)
    await redis.xadd(STREAM, envelope.to_fields())
    await redis.xadd(STREAM, envelope.to_fields())  # e.g. a relay killed before marking
    assert await consumer.read_batch() == 2
    assert handler.applied == [7]
    assert consumer.stats.duplicates == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 1


async def test_messages_of_a_crashed_consumer_are_reclaimed(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Recorder()
    survivor = _consumer(redis, sessionmaker, handler, name="survivor", claim_idle_ms=50)
    await survivor.ensure_groups()
    for n in range(3):
        await redis.xadd(STREAM, _envelope(n).to_fields())
    # A consumer reads the batch and dies before acknowledging anything.
    taken: Any = await redis.xreadgroup(GROUP, "crashed", {STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 3
    await asyncio.sleep(0.1)
    assert await survivor.reclaim_idle() == 3
    assert sorted(handler.applied) == [0, 1, 2]
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_a_message_that_keeps_failing_goes_to_dead_letters(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Recorder(failures=10)
    consumer = _consumer(redis, sessionmaker, handler, claim_idle_ms=10, max_deliveries=3)
    await consumer.ensure_groups()
    envelope = _envelope(1)
    await redis.xadd(STREAM, envelope.to_fields())
    await consumer.read_batch()  # delivery 1 fails: stays pending
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 1
    for _ in range(3):
        await asyncio.sleep(0.05)
        await consumer.reclaim_idle()
    assert handler.applied == []
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0
    dead = await stream_entries(redis, DEAD_LETTER_STREAM)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["stream"] == STREAM
    assert fields["group"] == GROUP
    assert "failed on purpose" in fields["error"]
    assert Envelope.from_fields(json.loads(fields["fields"])) == envelope
    # Nothing of the failed attempts was committed.
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0


async def test_unreadable_messages_are_dead_lettered_at_once(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    consumer = _consumer(redis, sessionmaker, Recorder())
    await consumer.ensure_groups()
    await redis.xadd(STREAM, {"envelope": "{not json"})
    await consumer.read_batch()
    assert len(await stream_entries(redis, DEAD_LETTER_STREAM)) == 1
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_consumer_recreates_its_group_after_redis_loses_everything(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Recorder()
    consumer = _consumer(redis, sessionmaker, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await redis.xadd(STREAM, _envelope(1).to_fields())
        await _until(lambda: handler.applied == [1])
        await redis.flushdb()
        await redis.xadd(STREAM, _envelope(2).to_fields())
        await _until(lambda: handler.applied == [1, 2])
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def _until(condition: Callable[[], bool]) -> None:
    # Polls state that another task changes.
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_outbox_insert_notifies_the_relay_channel_on_commit(
    infra: Infra, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(plain_url(infra.database_url))
    try:
        await listener.add_listener(
            notify_channel("intake"), lambda *args: received.put_nowait(args[2])
        )
        try:
            async with unit_of_work(sessionmaker) as session:
                enqueue(session, OutboxMessage, STREAM, _envelope())
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        async with unit_of_work(sessionmaker) as session:
            enqueue(session, OutboxMessage, STREAM, _envelope())
        channel = await asyncio.wait_for(received.get(), timeout=10)
        assert channel == "relief_outbox_intake"
        assert received.empty()  # the rolled-back insert notified nobody
    finally:
        await listener.close()


async def test_running_relay_publishes_what_is_committed(
    infra: Infra, redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    relay = OutboxRelay(
        sessionmaker=sessionmaker,
        redis=redis,
        model=OutboxMessage,
        listen_dsn=plain_url(infra.database_url),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        for n in range(3):
            async with unit_of_work(sessionmaker) as session:
                enqueue(session, OutboxMessage, STREAM, _envelope(n))
        async with asyncio.timeout(10):
            while len(await stream_entries(redis, STREAM)) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    assert await relay.backlog() == 0


async def test_redis_losing_everything_makes_the_relay_publish_again(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    relay = OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=OutboxMessage)
    assert await relay.check_redis_epoch() == 0  # first sight of this Redis: marks it
    async with unit_of_work(sessionmaker) as session:
        for n in range(3):
            enqueue(session, OutboxMessage, STREAM, _envelope(n))
    assert await relay.publish_batch() == 3
    assert await relay.check_redis_epoch() == 0  # marker present: nothing lost
    await redis.flushdb()
    assert await relay.check_redis_epoch() == 3
    assert await relay.publish_batch() == 3
    assert [
        Envelope.from_fields(f).payload["n"] for _, f in await stream_entries(redis, STREAM)
    ] == [
        0,
        1,
        2,
    ]


async def test_streams_are_trimmed_only_past_what_every_group_has_read(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    fast = _consumer(redis, sessionmaker, Recorder(), name="fast")
    await redis.xgroup_create(STREAM, "slow", id="0", mkstream=True)
    await fast.ensure_groups()
    for n in range(5):
        await redis.xadd(STREAM, _envelope(n).to_fields())
    assert await trim_consumed(redis, STREAM, [GROUP, "missing"]) == 0  # a group not there yet
    await fast.read_batch()
    assert await trim_consumed(redis, STREAM, [GROUP, "slow"]) == 0  # "slow" read nothing
    taken: Any = await redis.xreadgroup("slow", "s1", {STREAM: ">"}, count=3)
    ids = [mid for mid, _ in taken[0][1]]
    await redis.xack(STREAM, "slow", ids[0])  # 2 of 3 still pending for "slow"
    removed = await trim_consumed(redis, STREAM, [GROUP, "slow"], approximate=False)
    assert removed == 1  # only the entry before the oldest pending one
    remaining = [mid for mid, _ in await stream_entries(redis, STREAM)]
    assert remaining[0] == ids[1]
    assert len(remaining) == 4


class Committing:
    """A handler whose effect is a row (an outbox message per event), so what counts is what
    committed; notes each call's transaction id; fails on one event's payload if told to."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.transactions: list[int] = []

    async def __call__(self, session: AsyncSession, envelope: Envelope, stream: str) -> None:
        if envelope.payload["n"] == self.fail_on:
            raise RuntimeError("handler failed on purpose")
        self.transactions.append(int(await session.scalar(text("SELECT txid_current()")) or 0))
        enqueue(session, OutboxMessage, "relief:test:effects", envelope)


async def _effects(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxMessage.envelope).where(OutboxMessage.stream == "relief:test:effects")
        )
        return sorted(int(envelope["payload"]["n"]) for envelope in rows)


async def _five_waiting(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], handler: Committing
) -> StreamConsumer:
    consumer = StreamConsumer(
        redis=redis,
        sessionmaker=sessionmaker,
        inbox_model=InboxEvent,
        group=GROUP,
        consumer="c1",
        streams=[STREAM],
        handler=handler,
    )
    await consumer.ensure_groups()
    for n in range(5):
        await redis.xadd(STREAM, _envelope(n).to_fields())
    return consumer


async def test_a_batch_is_applied_in_one_transaction_and_acknowledged(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Committing()
    consumer = await _five_waiting(redis, sessionmaker, handler)
    assert await consumer.read_batch() == 5
    assert len(handler.transactions) == 5
    assert len(set(handler.transactions)) == 1
    assert await _effects(sessionmaker) == [0, 1, 2, 3, 4]
    assert consumer.stats.processed == 5
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_one_failing_message_costs_its_batch_nothing(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Committing(fail_on=2)
    consumer = await _five_waiting(redis, sessionmaker, handler)
    assert await consumer.read_batch() == 5
    # The batch was rolled back and the messages applied one by one: each effect once.
    assert await _effects(sessionmaker) == [0, 1, 3, 4]
    assert consumer.stats.processed == 4
    assert consumer.stats.failed == 1
    pending: Any = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
    assert len(pending) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 4


async def test_prepare_sees_a_batchs_new_events_before_its_handlers(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    seen: list[object] = []

    async def prepare(session: AsyncSession, envelopes: list[Envelope]) -> None:
        seen.append([e.payload["n"] for e in envelopes])

    async def handler(session: AsyncSession, envelope: Envelope, stream: str) -> None:
        seen.append(envelope.payload["n"])

    consumer = StreamConsumer(
        redis=redis,
        sessionmaker=sessionmaker,
        inbox_model=InboxEvent,
        group=GROUP,
        consumer="c1",
        streams=[STREAM],
        handler=handler,
        prepare=prepare,
    )
    await consumer.ensure_groups()
    first, second, third = _envelope(0), _envelope(1), _envelope(2)
    await redis.xadd(STREAM, first.to_fields())
    await consumer.read_batch()  # one message: applied alone, nothing to prepare
    assert seen == [0]
    for envelope in (first, second, third, second):
        await redis.xadd(STREAM, envelope.to_fields())
    await consumer.read_batch()
    # Only the first copy of each event not applied before, and before any handler.
    assert seen == [0, [1, 2], 1, 2]
    for envelope in (first, third):
        await redis.xadd(STREAM, envelope.to_fields())
    await consumer.read_batch()  # nothing new
    assert seen == [0, [1, 2], 1, 2]
    assert consumer.stats.duplicates == 4


async def test_dead_letters_are_listed_and_sent_again_once_fixed(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    handler = Recorder(failures=10)
    consumer = _consumer(redis, sessionmaker, handler, claim_idle_ms=10, max_deliveries=2)
    await consumer.ensure_groups()
    envelope = _envelope(5)
    await redis.xadd(STREAM, envelope.to_fields())
    await consumer.read_batch()
    for _ in range(2):
        await asyncio.sleep(0.05)
        await consumer.reclaim_idle()
    [letter] = await list_dead(redis)
    assert (letter.stream, letter.group) == (STREAM, GROUP)
    assert "failed on purpose" in letter.error
    assert Envelope.from_fields(letter.fields) == envelope

    handler.failures = 0  # the cause is fixed
    assert [s.id for s in await send_again(redis)] == [letter.id]
    assert await list_dead(redis) == []
    await consumer.read_batch()
    assert handler.applied == [5]
    # Sent again once more (a second retry by mistake): still applied once.
    await redis.xadd(STREAM, envelope.to_fields())
    await consumer.read_batch()
    assert handler.applied == [5]
    assert await send_again(redis, ["0-1"]) == []  # an unknown id is skipped
