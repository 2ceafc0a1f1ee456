"""Entry points for the long-running processes: one stream consumer, one outbox relay."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker, plain_url
from shared.lifecycle import stop_on_signals
from shared.logging import configure_logging
from shared.outbox import InboxMixin, OutboxMixin, OutboxRelay
from shared.redis import create_redis
from shared.settings import ServiceSettings
from shared.streams import Handler, StreamConsumer


def consumer_name(service: str, settings: ServiceSettings) -> str:
    return f"{socket.gethostname()}-{service}-{settings.worker_id}"


@dataclass
class _Process:
    stop: asyncio.Event
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis


@asynccontextmanager
async def _process(
    settings: ServiceSettings, service: str, role: str, stop: asyncio.Event | None
) -> AsyncIterator[_Process]:
    """Logging, signal handling and the database and Redis clients of one process."""
    configure_logging(
        service=f"{service}-{role}",
        json=settings.log_json if settings.log_json is not None else not settings.is_dev,
        level=settings.log_level,
    )
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    engine = create_engine(settings, application_name=f"relief-{service}-{role}")
    redis = create_redis(settings.require_redis_url())
    try:
        yield _Process(stop, create_sessionmaker(engine), redis)
    finally:
        await redis.aclose()
        await engine.dispose()


async def run_consumer(
    settings: ServiceSettings,
    *,
    service: str,
    group: str,
    streams: Sequence[str],
    inbox_model: type[InboxMixin],
    handler: Handler,
    stop: asyncio.Event | None = None,
) -> None:
    async with _process(settings, service, "worker", stop) as process:
        consumer = StreamConsumer(
            redis=process.redis,
            sessionmaker=process.sessionmaker,
            inbox_model=inbox_model,
            group=group,
            consumer=consumer_name(service, settings),
            streams=streams,
            handler=handler,
            claim_idle_ms=settings.consumer_claim_idle_ms,
            max_deliveries=settings.consumer_max_deliveries,
        )
        await consumer.run(process.stop)


async def run_relay(
    settings: ServiceSettings,
    *,
    service: str,
    outbox_model: type[OutboxMixin],
    stop: asyncio.Event | None = None,
) -> None:
    async with _process(settings, service, "relay", stop) as process:
        relay = OutboxRelay(
            sessionmaker=process.sessionmaker,
            redis=process.redis,
            model=outbox_model,
            listen_dsn=plain_url(settings.require_database_url()),
        )
        await relay.run(process.stop)
