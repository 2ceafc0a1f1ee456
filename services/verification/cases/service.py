"""Rules of the department's side: opening cases from routed applications and working them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.cases import repository
from services.verification.cases.repository import Scope
from services.verification.cases.schemas import (
    ApplicantMasked,
    CaseAttachmentOut,
    CaseDetail,
    CasePage,
    CaseSummary,
    DecideIn,
    RequestInfoIn,
)
from services.verification.models import (
    ENDED_STATUSES,
    Case,
    CaseAttachment,
    CaseStatus,
    CaseTransition,
    OutboxMessage,
    StaffUser,
)
from shared.catalog import catalog
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.events import EVENTS_STREAM, Envelope, EventType
from shared.outbox import enqueue
from shared.pagination import decode_keyset, split_page
from shared.regions import regions

STATUS_LABELS = {
    CaseStatus.OPEN: "待认领",
    CaseStatus.CLAIMED: "已认领，综合研判中",
    CaseStatus.FIELD_CHECK: "实地调查",
    CaseStatus.VILLAGE_REVIEW: "村评议公示",
    CaseStatus.TOWNSHIP_AUDIT: "乡镇审核",
    CaseStatus.COUNTY_DECISION: "县级确定",
    CaseStatus.DECIDED: "已办结",
    CaseStatus.TRANSFERRED: "已转办",
}


def now_utc() -> datetime:
    return datetime.now(UTC)


def record(
    session: AsyncSession,
    case: Case,
    *,
    to_status: str,
    from_status: str | None,
    actor: StaffUser | None,
    actor_role: str | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime,
) -> None:
    """Append to the case's audit trail: who, when, from what to what, and why."""
    repository.add_transition(
        session,
        CaseTransition(
            case_id=case.id,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor.id if actor else None,
            actor_role=actor.role if actor else (actor_role or "system"),
            reason=reason,
            data=data,
            occurred_at=at,
        ),
    )


def announce(
    session: AsyncSession, case: Case, event_type: EventType, payload: dict[str, Any], at: datetime
) -> None:
    enqueue(
        session,
        OutboxMessage,
        EVENTS_STREAM,
        Envelope(
            type=event_type,
            application_id=case.application_id,
            department=case.department,
            occurred_at=at,
            payload={"case_id": str(case.id), **payload},
        ),
    )


def _summary_fields(case: Case, now: datetime) -> dict[str, Any]:
    item = catalog().item(case.item_code)
    table = regions()
    return {
        "id": case.id,
        "application_id": case.application_id,
        "item_code": case.item_code,
        "item_name": item.name if item else case.item_code,
        "department": case.department,
        "region_code": case.region_code,
        "region_name": table.full_name(case.region_code)
        if table.is_county(case.region_code)
        else case.region_code,
        "status": case.status,
        "status_label": STATUS_LABELS[CaseStatus(case.status)],
        "applicant": ApplicantMasked(
            name=case.applicant_name, id_number=case.id_number_masked, phone=case.phone_masked
        ),
        "assignee_id": case.assignee_id,
        "submitted_at": case.submitted_at,
        "deadline": case.deadline,
        "overdue": case.status not in ENDED_STATUSES and case.deadline < now,
    }


async def detail(session: AsyncSession, case: Case) -> CaseDetail:
    attachments = await repository.attachments_of(session, case.application_id)
    return CaseDetail(
        **_summary_fields(case, now_utc()),
        household=case.household,
        description=case.description,
        form=case.form,
        prescreen=case.prescreen,
        submitted_by_role=case.submitted_by_role,
        info_request=case.info_request,
        info_requested_at=case.info_requested_at,
        attachments=[
            CaseAttachmentOut(
                id=a.id,
                content_type=a.content_type,
                size=a.size,
                filename=a.filename,
                added_at=a.added_at,
            )
            for a in attachments
        ],
        outcome=case.outcome,
        decision_reason=case.decision_reason,
        measures=case.measures,
        decided_at=case.decided_at,
    )


async def list_cases(
    session: AsyncSession,
    user: StaffUser,
    *,
    statuses: list[str] | None,
    item_code: str | None,
    overdue: bool | None,
    limit: int,
    cursor: str | None,
) -> CasePage:
    if statuses:
        unknown = set(statuses) - {s.value for s in CaseStatus}
        if unknown:
            raise InvalidInput("状态参数无效", code="status_invalid", details=sorted(unknown))
    now = now_utc()
    rows = await repository.list_in_scope(
        session,
        Scope.of(user),
        statuses=statuses,
        item_code=item_code,
        overdue_before=now if overdue else None,
        limit=limit + 1,
        after=decode_keyset(cursor),
    )
    page, next_cursor = split_page(rows, limit, lambda c: (c.deadline, c.id))
    return CasePage(
        items=[CaseSummary(**_summary_fields(c, now)) for c in page], next_cursor=next_cursor
    )


async def get_case(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, *, for_update: bool = False
) -> Case:
    case = await repository.get_in_scope(session, Scope.of(user), case_id, for_update=for_update)
    if case is None:
        raise NotFound("找不到该案件，或不在您的办理范围内")
    return case


async def claim(session: AsyncSession, user: StaffUser, case_id: uuid.UUID) -> Case:
    now = now_utc()
    case = await repository.claim(session, Scope.of(user), case_id, user.id, now)
    if case is None:
        current = await get_case(session, user, case_id)  # 404 when out of scope
        raise Conflict(
            "该案件已被认领或已办结", code="case_not_open", details={"status": current.status}
        )
    record(
        session, case, to_status=CaseStatus.CLAIMED, from_status=CaseStatus.OPEN, actor=user, at=now
    )
    announce(session, case, EventType.CASE_CLAIMED, {"assignee_id": str(user.id)}, now)
    return case


def _require_assignee(case: Case, user: StaffUser) -> None:
    if case.status in ENDED_STATUSES or case.status == CaseStatus.OPEN:
        raise Conflict("只能办理已认领、尚未办结的案件", code="case_not_in_progress")
    if case.assignee_id != user.id:
        raise Forbidden("该案件由其他工作人员办理", code="not_assignee")


async def request_info(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: RequestInfoIn
) -> Case:
    case = await get_case(session, user, case_id, for_update=True)
    _require_assignee(case, user)
    if case.info_requested_at is not None:
        raise Conflict("已在等待群众补充材料", code="info_already_requested")
    now = now_utc()
    case.info_requested_at = now
    case.info_request = body.message
    case.updated_at = now
    record(
        session,
        case,
        to_status=case.status,
        from_status=case.status,
        actor=user,
        reason=f"要求补充材料：{body.message}",
        at=now,
    )
    announce(session, case, EventType.CASE_INFO_REQUESTED, {"message": body.message}, now)
    return case


async def attachment(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, attachment_id: uuid.UUID
) -> CaseAttachment:
    case = await get_case(session, user, case_id)
    for item in await repository.attachments_of(session, case.application_id):
        if item.id == attachment_id:
            return item
    raise NotFound("找不到该附件")


async def decide(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: DecideIn
) -> Case:
    case = await get_case(session, user, case_id, for_update=True)
    _require_assignee(case, user)
    now = now_utc()
    previous = case.status
    measures = [m.model_dump(mode="json") for m in body.measures]
    case.status = CaseStatus.DECIDED
    case.outcome = body.outcome
    case.decision_reason = body.reason or None
    case.measures = measures
    case.decided_at = now
    case.updated_at = now
    record(
        session,
        case,
        to_status=CaseStatus.DECIDED,
        from_status=previous,
        actor=user,
        reason=body.reason or None,
        data={"outcome": body.outcome, "measures": measures},
        at=now,
    )
    announce(
        session,
        case,
        EventType.CASE_DECIDED,
        {
            "outcome": body.outcome,
            "reason": body.reason or None,
            "measures": measures,
            "on_time": now <= case.deadline,
            # Enough for a consumer that has not yet seen the submission to count it.
            "item_code": case.item_code,
            "region_code": case.region_code,
            "submitted_at": case.submitted_at.isoformat(),
            "deadline": case.deadline.isoformat(),
        },
        now,
    )
    await session.flush()
    return case
