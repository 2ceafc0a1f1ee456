"""Citizen notifications: queued in the same transaction as the event that causes them,
at most one per event, delivered by the sender loop."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact, Notification, NotificationStatus
from services.notify.notifications import repository
from services.notify.notifications.texts import KINDS, compose
from shared.db import deferred, table_of
from shared.events import Envelope


async def queue_for_event(
    session: AsyncSession, envelope: Envelope, fact: ApplicationFact, zone: ZoneInfo
) -> None:
    kind = KINDS.get(envelope.type)  # type: ignore[call-overload]
    if kind is None or (fact.recipient_openid is None and fact.recipient_phone_enc is None):
        return
    item_code = fact.item_code
    composed = compose(envelope, item_code, fact.deadline, zone)
    if composed is None:
        return
    text, data = composed
    connection = await session.connection()
    await connection.execute(
        _QUEUE_NOTIFICATION,
        {
            "id": uuid.uuid4(),
            "event_id": envelope.event_id,
            "application_id": envelope.application_id,
            "kind": kind,
            "text": text,
            "template_data": data,
            "recipient_openid": fact.recipient_openid,
            "recipient_phone_enc": fact.recipient_phone_enc,
            "status": NotificationStatus.PENDING,
        },
    )


# Built once, run as a Core statement: through the ORM, an INSERT ... VALUES was compiled
# anew for every event. ON CONFLICT: an event seen twice (however it got past the inbox)
# queues nothing new.
_QUEUE_NOTIFICATION = (
    insert(table_of(Notification))
    .values(next_attempt_at=func.now())
    .on_conflict_do_nothing(index_elements=[table_of(Notification).c.event_id])
)


def backoff(attempts: int, *, base: float, cap: float) -> timedelta:
    """Exponential backoff with jitter: ~base, 2·base, 4·base… up to cap, each ×[0.5, 1.5)."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * (0.5 + random.random()))  # noqa: S311 (jitter, not secrets)


@dataclass
class _Attempts:
    """The transaction's delivery log rows, written in one INSERT when it commits."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def write(self, connection: Connection) -> None:
        repository.insert_attempts(connection, self.rows)


def log_attempt(
    session: AsyncSession,
    notification: Notification,
    *,
    channel: str,
    ok: bool,
    at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
    provider_message_id: str | None = None,
) -> None:
    """Log one try on one channel; written with the notification's new state, at commit
    (`shared.db.deferred`: a Core INSERT instead of an ORM INSERT ... RETURNING each)."""
    deferred(session, _Attempts).rows.append(
        {
            "notification_id": notification.id,
            "channel": channel,
            "ok": ok,
            "error_code": error_code,
            "error_message": (error_message or "")[:1000] or None,
            "provider_message_id": provider_message_id,
            "at": at,
        }
    )
