"""Entry points for the long-running processes: one stream consumer, one outbox relay."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker, plain_url
from shared.lifecycle import sleep_or_stop, stop_on_signals, tune_gc
from shared.logging import configure_logging
from shared.outbox import InboxMixin, OutboxMixin, OutboxRelay
from shared.redis import create_redis
from shared.settings import ServiceSettings
from shared.streams import Handler, Prepare, StreamConsumer

log = structlog.get_logger(__name__)


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
    tune_gc()
    try:
        yield _Process(stop, create_sessionmaker(engine), redis)
    finally:
        await redis.aclose()
        await engine.dispose()


# The linger of consumers off the path from a submission to the clerk's queue (intake's
# timeline, notify's facts and messages): after a short batch they wait this long, so
# that under load their batches, one transaction each, grow; the citizen does not see
# 100 ms. Verification's consumer, which opens the cases, waits less (its ROUTE_LINGER_MS).
BACKGROUND_LINGER_MS = 100


async def run_consumer(
    settings: ServiceSettings,
    *,
    service: str,
    group: str,
    streams: Sequence[str],
    inbox_model: type[InboxMixin],
    handler: Handler,
    stop: asyncio.Event | None = None,
    periodic: Sequence[Periodic] = (),
    on_duplicate: Handler | None = None,
    prepare: Prepare | None = None,
    linger_ms: int = 20,
) -> None:
    """The consumer, and beside it any periodic jobs (every `seconds`, until stopped).
    `prepare`: run before a batch's handlers, e.g. to lock its rows in one query.
    `linger_ms`: the wait after a short batch, so that under load batches grow."""
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
            on_duplicate=on_duplicate,
            prepare=prepare,
            linger_ms=linger_ms,
        )
        jobs = [
            asyncio.create_task(_every(job.seconds, job.run, process.sessionmaker, process.stop))
            for job in periodic
        ]
        try:
            await consumer.run(process.stop)
        finally:
            process.stop.set()
            await asyncio.gather(*jobs, return_exceptions=True)


@dataclass(frozen=True)
class Periodic:
    seconds: float
    run: Callable[[async_sessionmaker[AsyncSession]], Awaitable[object]]


async def _every(
    seconds: float,
    job: Callable[[async_sessionmaker[AsyncSession]], Awaitable[object]],
    sessionmaker: async_sessionmaker[AsyncSession],
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            await job(sessionmaker)
        except Exception as exc:  # a failed sweep is retried on the next tick
            log.warning("periodic_job_failed", job=getattr(job, "__name__", "?"), error=repr(exc))
        await sleep_or_stop(stop, seconds)


async def run_relay(
    settings: ServiceSettings,
    *,
    service: str,
    outbox_model: type[OutboxMixin],
    stop: asyncio.Event | None = None,
    linger_seconds: float = 0.01,
) -> None:
    async with _process(settings, service, "relay", stop) as process:
        relay = OutboxRelay(
            sessionmaker=process.sessionmaker,
            redis=process.redis,
            model=outbox_model,
            listen_dsn=plain_url(settings.require_database_url()),
            linger_seconds=linger_seconds,
        )
        await relay.run(process.stop)
