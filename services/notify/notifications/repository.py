"""Every query of the notifications domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import DeliveryAttempt, Notification, NotificationStatus
from shared.db import table_of

# Built once: the sender runs it every sweep.
_DUE = (
    select(Notification)
    .where(
        Notification.status == NotificationStatus.PENDING,
        Notification.next_attempt_at <= bindparam("now"),
    )
    .order_by(Notification.next_attempt_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


async def lock_due(session: AsyncSession, now: datetime, *, limit: int) -> list[Notification]:
    """Up to `limit` notifications due at `now`, longest waiting first, locked so that
    parallel senders never take the same one (each skips what another holds)."""
    return list((await session.scalars(_DUE, {"now": now, "limit": limit})).all())


_INSERT_ATTEMPTS = insert(table_of(DeliveryAttempt))


def insert_attempts(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Write delivery log rows in one statement. Synchronous: it runs inside the commit
    (see `shared.db.deferred`)."""
    if rows:
        connection.execute(_INSERT_ATTEMPTS, rows)


async def page(
    session: AsyncSession,
    *,
    application_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Notification]:
    query = select(Notification)
    if application_id is not None:
        query = query.where(Notification.application_id == application_id)
    if status is not None:
        query = query.where(Notification.status == status)
    if after is not None:
        query = query.where(tuple_(Notification.created_at, Notification.id) < after)
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def get(session: AsyncSession, notification_id: uuid.UUID) -> Notification | None:
    return await session.get(Notification, notification_id, populate_existing=True)


async def attempts_of(session: AsyncSession, notification_id: uuid.UUID) -> list[DeliveryAttempt]:
    return list(
        (
            await session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.notification_id == notification_id)
                .order_by(DeliveryAttempt.at, DeliveryAttempt.id)
            )
        ).all()
    )


async def revive(session: AsyncSession, notification_id: uuid.UUID) -> bool:
    """Put a dead notification back in the queue, with its attempts counted afresh."""
    result = await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.status == NotificationStatus.DEAD)
        .values(
            status=NotificationStatus.PENDING,
            attempts=0,
            wechat_refused=False,
            next_attempt_at=func.now(),
            last_error=None,
        )
    )
    return bool(getattr(result, "rowcount", 0))
