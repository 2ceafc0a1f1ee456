"""Entry points for the long-running processes: one stream consumer, one outbox relay."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from shared.db import create_engine, create_sessionmaker, plain_url
from shared.lifecycle import stop_on_signals
from shared.logging import configure_logging
from shared.outbox import InboxMixin, OutboxMixin, OutboxRelay
from shared.redis import create_redis
from shared.settings import ServiceSettings
from shared.streams import Handler, StreamConsumer


def consumer_name(service: str, settings: ServiceSettings) -> str:
    return f"{socket.gethostname()}-{service}-{settings.worker_id}"


def _configure(service: str, role: str, settings: ServiceSettings) -> None:
    configure_logging(
        service=f"{service}-{role}",
        json=settings.log_json if settings.log_json is not None else not settings.is_dev,
        level=settings.log_level,
    )


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
    _configure(service, "worker", settings)
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    engine = create_engine(settings, application_name=f"relief-{service}-worker")
    redis = create_redis(settings.require_redis_url())
    try:
        consumer = StreamConsumer(
            redis=redis,
            sessionmaker=create_sessionmaker(engine),
            inbox_model=inbox_model,
            group=group,
            consumer=consumer_name(service, settings),
            streams=streams,
            handler=handler,
            claim_idle_ms=settings.consumer_claim_idle_ms,
            max_deliveries=settings.consumer_max_deliveries,
        )
        await consumer.run(stop)
    finally:
        await redis.aclose()
        await engine.dispose()


async def run_relay(
    settings: ServiceSettings,
    *,
    service: str,
    outbox_model: type[OutboxMixin],
    stop: asyncio.Event | None = None,
) -> None:
    _configure(service, "relay", settings)
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    engine = create_engine(settings, application_name=f"relief-{service}-relay")
    redis = create_redis(settings.require_redis_url())
    try:
        relay = OutboxRelay(
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            model=outbox_model,
            listen_dsn=plain_url(settings.require_database_url()),
        )
        await relay.run(stop)
    finally:
        await redis.aclose()
        await engine.dispose()
