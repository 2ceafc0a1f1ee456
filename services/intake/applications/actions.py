"""What a citizen (or the grid worker who entered the application) does after submitting:
answer a request for information, withdraw, rate the service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.applications import repository
from services.intake.applications.schemas import RatingIn, SupplementIn, WithdrawIn
from services.intake.applications.service import get_visible
from services.intake.models import Application, ApplicationStatus, OutboxMessage, Outcome
from shared.auth import Principal, Role
from shared.errors import Conflict, Forbidden, InvalidInput
from shared.events import EVENTS_STREAM, Envelope, EventType, route_stream
from shared.outbox import enqueue


def announce(
    session: AsyncSession,
    application: Application,
    event_type: EventType,
    *,
    route: dict[str, Any] | None = None,
    event: dict[str, Any] | None = None,
    at: datetime,
) -> None:
    """To the department's route stream (what the case needs) and/or to relief:events (what
    everyone may read: no personal data)."""
    for stream, payload in (
        (route_stream(application.department), route),
        (EVENTS_STREAM, event),
    ):
        if payload is not None:
            enqueue(
                session,
                OutboxMessage,
                stream,
                Envelope(
                    type=event_type,
                    application_id=application.id,
                    department=application.department,
                    occurred_at=at,
                    payload=payload,
                ),
            )


def _facts(application: Application) -> dict[str, Any]:
    """What a consumer that has not seen the submission needs to count the application."""
    return {
        "item_code": application.item_code,
        "region_code": application.region_code,
        "submitted_at": application.created_at.isoformat(),
        "deadline": application.deadline.isoformat(),
    }


async def supplement(
    session: AsyncSession, principal: Principal, application_id: uuid.UUID, body: SupplementIn
) -> Application:
    application = await get_visible(session, principal, application_id, for_update=True)
    if application.status != ApplicationStatus.NEEDS_INFO:
        raise Conflict("工作人员没有要求补充材料，无需补充", code="no_info_requested")
    known = {a.id for a in await repository.attachments_of(session, application.id)}
    unknown = [str(a) for a in body.attachment_ids if a not in known]
    if unknown:
        raise InvalidInput(
            "附件不属于这份申请，请先上传", code="attachment_unknown", details=unknown
        )
    now = datetime.now(UTC)
    application.status = ApplicationStatus.IN_REVIEW
    application.info_request = None
    application.updated_at = now
    repository.add_timeline(
        session,
        application.id,
        kind=EventType.APPLICATION_SUPPLEMENTED,
        title="已补充材料",
        detail=f"您的答复：{body.message}",
        occurred_at=now,
    )
    announce(
        session,
        application,
        EventType.APPLICATION_SUPPLEMENTED,
        route={
            "message": body.message,
            "attachment_ids": [str(a) for a in body.attachment_ids],
            "by_role": principal.role.value,
        },
        event={},
        at=now,
    )
    return application


async def withdraw(
    session: AsyncSession, principal: Principal, application_id: uuid.UUID, body: WithdrawIn
) -> Application:
    application = await get_visible(session, principal, application_id, for_update=True)
    if application.status == ApplicationStatus.CLOSED:
        raise Conflict("申请已办结，不能撤回", code="application_closed")
    now = datetime.now(UTC)
    application.status = ApplicationStatus.CLOSED
    application.outcome = Outcome.WITHDRAWN
    application.closed_at = now
    application.withdraw_reason = body.reason or None
    application.updated_at = now
    repository.add_timeline(
        session,
        application.id,
        kind=EventType.APPLICATION_WITHDRAWN,
        title="已撤回",
        detail=f"您已撤回申请。{('原因：' + body.reason) if body.reason else ''}",
        occurred_at=now,
    )
    announce(
        session,
        application,
        EventType.APPLICATION_WITHDRAWN,
        route={"reason": body.reason or None, "by_role": principal.role.value},
        event=_facts(application),
        at=now,
    )
    return application


async def rate(
    session: AsyncSession, principal: Principal, application_id: uuid.UUID, body: RatingIn
) -> Application:
    if principal.role is not Role.CITIZEN:
        raise Forbidden("评价只能由申请人本人作出", code="citizen_only")
    application = await get_visible(session, principal, application_id, for_update=True)
    if application.status != ApplicationStatus.CLOSED:
        raise Conflict("办结后才能评价", code="not_closed")
    if application.rating is not None:
        raise Conflict("您已评价过这份申请，每份申请只能评价一次", code="already_rated")
    now = datetime.now(UTC)
    application.rating = body.score
    application.rating_comment = body.comment or None
    application.rated_at = now
    application.updated_at = now
    repository.add_timeline(
        session,
        application.id,
        kind=EventType.APPLICATION_RATED,
        title="已评价",
        detail=f"您给出了 {body.score} 星评价，感谢您的反馈。",
        occurred_at=now,
    )
    announce(
        session,
        application,
        EventType.APPLICATION_RATED,
        event={"score": body.score, **_facts(application)},
        at=now,
    )
    return application
