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
    CaseDetail,
    CasePage,
    CaseSummary,
    DecideIn,
)
from services.verification.models import (
    ENDED_STATUSES,
    Case,
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


def _now() -> datetime:
    return datetime.now(UTC)


def _record(
    session: AsyncSession,
    case: Case,
    *,
    to_status: str,
    from_status: str | None,
    actor: StaffUser | None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime,
) -> None:
    repository.add_transition(
        session,
        CaseTransition(
            case_id=case.id,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor.id if actor else None,
            actor_role=actor.role if actor else "system",
            reason=reason,
            data=data,
            occurred_at=at,
        ),
    )


def _announce(
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


async def open_case(session: AsyncSession, envelope: Envelope) -> Case:
    """Open the case for a routed application; a redelivered route message opens nothing new."""
    existing = await repository.by_route_event(session, envelope.event_id)
    if existing is not None:
        return existing
    payload = envelope.payload
    applicant = payload["applicant"]
    now = _now()
    case = Case(
        id=uuid.uuid4(),
        application_id=envelope.application_id,
        route_event_id=envelope.event_id,
        department=envelope.department,
        item_code=payload["item_code"],
        region_code=payload["region_code"],
        status=CaseStatus.OPEN,
        applicant_name=applicant["name"],
        id_number_enc=applicant["id_number_enc"],
        phone_enc=applicant["phone_enc"],
        id_number_masked=applicant["id_number_masked"],
        phone_masked=applicant["phone_masked"],
        household=payload["household"],
        description=payload["description"],
        submitted_at=datetime.fromisoformat(payload["submitted_at"]),
        deadline=datetime.fromisoformat(payload["deadline"]),
        created_at=now,
        updated_at=now,
    )
    repository.add(session, case)
    await session.flush()
    _record(session, case, to_status=CaseStatus.OPEN, from_status=None, actor=None, at=now)
    _announce(
        session,
        case,
        EventType.CASE_OPENED,
        {"item_code": case.item_code, "region_code": case.region_code},
        now,
    )
    return case


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


def detail(case: Case) -> CaseDetail:
    return CaseDetail(
        **_summary_fields(case, _now()),
        household=case.household,
        description=case.description,
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
    now = _now()
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
    now = _now()
    case = await repository.claim(session, Scope.of(user), case_id, user.id, now)
    if case is None:
        current = await get_case(session, user, case_id)  # 404 when out of scope
        raise Conflict(
            "该案件已被认领或已办结", code="case_not_open", details={"status": current.status}
        )
    _record(
        session, case, to_status=CaseStatus.CLAIMED, from_status=CaseStatus.OPEN, actor=user, at=now
    )
    _announce(session, case, EventType.CASE_CLAIMED, {"assignee_id": str(user.id)}, now)
    return case


async def decide(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: DecideIn
) -> Case:
    case = await get_case(session, user, case_id, for_update=True)
    if case.status in ENDED_STATUSES or case.status == CaseStatus.OPEN:
        raise Conflict("只能对已认领、尚未办结的案件作出决定", code="case_not_decidable")
    if case.assignee_id != user.id:
        raise Forbidden("该案件由其他工作人员办理", code="not_assignee")
    now = _now()
    previous = case.status
    measures = [m.model_dump(mode="json") for m in body.measures]
    case.status = CaseStatus.DECIDED
    case.outcome = body.outcome
    case.decision_reason = body.reason or None
    case.measures = measures
    case.decided_at = now
    case.updated_at = now
    _record(
        session,
        case,
        to_status=CaseStatus.DECIDED,
        from_status=previous,
        actor=user,
        reason=body.reason or None,
        data={"outcome": body.outcome, "measures": measures},
        at=now,
    )
    _announce(
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
