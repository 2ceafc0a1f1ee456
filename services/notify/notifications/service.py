"""Citizen notifications: queued in the same transaction as the event that causes them,
at most one per event, delivered by the sender loop."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact, Notification, NotificationStatus
from services.notify.notifications import repository
from services.notify.notifications.texts import KINDS, compose
from shared.db import column_arrays, deferred, table_of, unnest_insert
from shared.events import Envelope


def queue_for_event(
    session: AsyncSession, envelope: Envelope, fact: ApplicationFact, zone: ZoneInfo
) -> None:
    kind = KINDS.get(envelope.type)  # type: ignore[call-overload]
    if kind is None or (fact.recipient_openid is None and fact.recipient_phone_enc is None):
        return
    item_code = fact.item_code
    composed = compose(envelope, item_code, fact.deadline, zone)
    if composed is None:
        return
    message, data = composed
    deferred(session, _Queued).rows.append(
        {
            "id": uuid.uuid4(),
            "event_id": envelope.event_id,
            "application_id": envelope.application_id,
            "kind": kind,
            "text": message,
            "template_data": json.dumps(data, ensure_ascii=False),
            "recipient_openid": fact.recipient_openid,
            "recipient_phone_enc": fact.recipient_phone_enc,
            "status": NotificationStatus.PENDING.value,
        }
    )


@dataclass
class _Queued:
    """The transaction's new notifications, written in one INSERT when it commits (a
    consumer batch queues one per event of most kinds; nothing reads them back before)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def write(self, connection: Connection) -> None:
        if self.rows:
            connection.execute(_QUEUE_NOTIFICATIONS, column_arrays(self.rows, _QUEUED_COLUMNS))


_QUEUED_COLUMNS = (
    "id",
    "event_id",
    "application_id",
    "kind",
    "text",
    "template_data",
    "recipient_openid",
    "recipient_phone_enc",
    "status",
)
_NOTIFICATIONS = table_of(Notification)

# Built once: the rows as column arrays, one statement for any number of them. ON
# CONFLICT: an event seen twice (however it got past the inbox) queues nothing new.
_QUEUE_NOTIFICATIONS = text(
    f"""
    {unnest_insert(_NOTIFICATIONS, _QUEUED_COLUMNS, computed={"next_attempt_at": "now()"})}
    ON CONFLICT (event_id) DO NOTHING
    """
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
