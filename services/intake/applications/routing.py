"""End-to-end acknowledgement of routing (DESIGN: an application counts as routed only when
the department's case.opened comes back). Unacknowledged route messages are published
again, with the same event id, so a Redis that lost them loses no application."""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.applications import repository
from services.intake.applications.service import route_envelope
from services.intake.models import OutboxMessage
from shared.db import now_utc, unit_of_work
from shared.events import route_stream
from shared.outbox import republish

log = structlog.get_logger(__name__)


async def reroute_unacknowledged(
    sessionmaker: async_sessionmaker[AsyncSession], *, after: timedelta, limit: int = 500
) -> int:
    async with unit_of_work(sessionmaker) as session:
        now = now_utc()
        waiting = await repository.unacknowledged(session, older_than=now - after, limit=limit)
        for application in waiting:
            await republish(
                session,
                OutboxMessage,
                route_stream(application.department),
                route_envelope(application),
            )
            application.reroutes += 1
            application.last_routed_at = now
    if waiting:
        log.warning("applications_rerouted", count=len(waiting))
    return len(waiting)
