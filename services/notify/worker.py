"""Notify's worker: follows every event (facts, closure counters, citizen notifications,
escalations), delivers due notifications, and reminds clerks of deadlines."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.facts.service import apply_event, lock_for_events
from services.notify.models import InboxEvent
from services.notify.notifications.sender import Sender
from services.notify.reminders.service import remind_due_soon
from services.notify.settings import NotifySettings
from shared.events import EVENTS_STREAM, Envelope
from shared.redis import create_redis
from shared.runner import BACKGROUND_LINGER_MS, Periodic, run_consumer
from shared.streams import Handler

GROUP = "notify"


def event_handler(settings: NotifySettings) -> Handler:
    zone = ZoneInfo(settings.report_timezone)

    async def handle(session: AsyncSession, envelope: Envelope, stream: str) -> None:
        await apply_event(session, envelope, zone)

    return handle


def periodic_jobs(settings: NotifySettings, sender: Sender) -> list[Periodic]:
    zone = ZoneInfo(settings.report_timezone)
    before = timedelta(hours=settings.reminder_before_hours)

    async def remind(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        return await remind_due_soon(sessionmaker, before=before, zone=zone)

    return [
        Periodic(settings.sender_interval_seconds, sender.deliver_due),
        Periodic(settings.reminder_sweep_seconds, remind),
    ]


async def run_worker(settings: NotifySettings, stop: asyncio.Event | None = None) -> None:
    redis = create_redis(settings.require_redis_url())
    sender = Sender(settings, redis)
    try:
        await run_consumer(
            settings,
            service="notify",
            group=GROUP,
            streams=[EVENTS_STREAM],
            inbox_model=InboxEvent,
            handler=event_handler(settings),
            prepare=lock_for_events,
            stop=stop,
            periodic=periodic_jobs(settings, sender),
            linger_ms=BACKGROUND_LINGER_MS,
        )
    finally:
        await sender.aclose()
        await redis.aclose()
