"""Verification's consumers: one per deployment, reading the route streams of the
departments it serves."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.verification.accounts.repository import token_states
from services.verification.cases.deadlines import announce_overdue
from services.verification.cases.routing import HANDLERS, open_cases, reannounce_opened
from services.verification.models import InboxEvent, OutboxMessage
from services.verification.settings import VerificationSettings
from shared import staff_tokens
from shared.events import Envelope, route_stream
from shared.redis import create_redis
from shared.runner import Periodic, run_consumer, run_relay

GROUP = "verification"
VERIFICATION_RELAY_LINGER_SECONDS = 0.05
# The consumer's wait after a short batch, for the batches (one transaction, one INSERT of
# all its cases) to grow under load; a new case reaches the clerk's queue at most this much
# later. relief bench at 32 connections, 20 -> 40 ms: this worker's CPU 0.173 -> 0.130 of
# the intake API's.
ROUTE_LINGER_MS = 40


async def handle_route(session: AsyncSession, envelope: Envelope, stream: str) -> None:
    handler = HANDLERS.get(envelope.type)  # type: ignore[call-overload]
    if handler is not None:
        await handler(session, envelope)


async def run_worker(settings: VerificationSettings, stop: asyncio.Event | None = None) -> None:
    redis = create_redis(settings.require_redis_url())

    async def sync_tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        async with sessionmaker() as session:
            states = await token_states(session)
        return await staff_tokens.publish_all(redis, states)

    await run_consumer(
        settings,
        service="verification",
        group=GROUP,
        streams=[route_stream(d) for d in settings.served_departments()],
        inbox_model=InboxEvent,
        handler=handle_route,
        on_duplicate=reannounce_opened,
        prepare=open_cases,
        linger_ms=ROUTE_LINGER_MS,
        stop=stop,
        periodic=[
            Periodic(settings.overdue_sweep_seconds, announce_overdue),
            Periodic(settings.staff_token_sync_seconds, sync_tokens),
        ],
    )


async def run_outbox_relay(
    settings: VerificationSettings, stop: asyncio.Event | None = None
) -> None:
    # Longer than intake's relay (10 ms), which carries applications to the clerks' queues:
    # these are clerk actions on their way to the citizen's timeline and notify, where 50 ms
    # more is unseen, and larger batches cost less per message (relief replay --scale 0.01:
    # this relay's CPU 25.1 → 10.7 s).
    await run_relay(
        settings,
        service="verification",
        outbox_model=OutboxMessage,
        stop=stop,
        linger_seconds=VERIFICATION_RELAY_LINGER_SECONDS,
    )
