"""Ops: the delivery log per application, the dead letters, and replaying them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from services.notify.models import Notification
from services.notify.notifications import repository
from services.notify.reminders.router import CurrentStaff
from shared.auth import Principal, Role
from shared.db import DbSession
from shared.errors import Conflict, Forbidden, NotFound
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_keyset, split_page

router = APIRouter(prefix="/notifications", tags=["notifications"])


async def _admin(principal: CurrentStaff) -> Principal:
    if principal.role is not Role.ADMIN:
        raise Forbidden("只有系统管理员可以查看和重发通知", code="admin_only")
    return principal


Admin = Annotated[Principal, Depends(_admin)]


class AttemptOut(BaseModel):
    channel: str
    ok: bool
    error_code: str | None
    error_message: str | None
    at: datetime


class NotificationOut(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    kind: str
    text: str
    status: str
    channel: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None


class NotificationDetail(NotificationOut):
    delivery_log: list[AttemptOut]


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


def _out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        application_id=n.application_id,
        kind=n.kind,
        text=n.text,
        status=n.status,
        channel=n.channel,
        attempts=n.attempts,
        last_error=n.last_error,
        next_attempt_at=n.next_attempt_at,
        created_at=n.created_at,
        sent_at=n.sent_at,
    )


@router.get("", summary="通知记录（可按申请或状态筛选；status=dead 为死信）")
async def list_notifications(
    _: Admin,
    session: DbSession,
    application_id: uuid.UUID | None = None,
    status: Annotated[str | None, Query(pattern="^(pending|sent|dead)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> NotificationPage:
    rows = await repository.page(
        session,
        application_id=application_id,
        status=status,
        limit=limit + 1,
        after=decode_keyset(cursor),
    )
    page, next_cursor = split_page(rows, limit, lambda n: (n.created_at, n.id))
    return NotificationPage(items=[_out(n) for n in page], next_cursor=next_cursor)


@router.get("/{notification_id}", summary="一条通知及其投递记录")
async def get_notification(
    notification_id: uuid.UUID, _: Admin, session: DbSession
) -> NotificationDetail:
    notification = await repository.get(session, notification_id)
    if notification is None:
        raise NotFound("找不到该通知")
    attempts = await repository.attempts_of(session, notification_id)
    return NotificationDetail(
        **_out(notification).model_dump(),
        delivery_log=[
            AttemptOut(
                channel=a.channel,
                ok=a.ok,
                error_code=a.error_code,
                error_message=a.error_message,
                at=a.at,
            )
            for a in attempts
        ],
    )


@router.post("/{notification_id}/replay", summary="重发死信")
async def replay_notification(
    notification_id: uuid.UUID, _: Admin, session: DbSession
) -> NotificationOut:
    if not await repository.revive(session, notification_id):
        if await repository.get(session, notification_id) is None:
            raise NotFound("找不到该通知")
        raise Conflict("只有投递失败（死信）的通知可以重发", code="not_dead")
    notification = await repository.get(session, notification_id)
    assert notification is not None
    return _out(notification)
