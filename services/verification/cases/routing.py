"""What arrives from intake on the department's route stream: new applications, answers to
requests for information, withdrawals and attachments."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.cases import repository
from services.verification.cases.service import announce, now_utc, record
from services.verification.models import Case, CaseAttachment, CaseStatus
from shared.events import Envelope, EventType


async def open_case(session: AsyncSession, envelope: Envelope) -> Case:
    """Open the case for a routed application; a redelivered route message opens nothing new."""
    existing = await repository.by_route_event(session, envelope.event_id)
    if existing is not None:
        return existing
    payload = envelope.payload
    applicant = payload["applicant"]
    now = now_utc()
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
        form=payload.get("form") or {},
        prescreen=payload.get("prescreen"),
        submitted_by_role=payload.get("submitted_by_role") or "citizen",
        submitted_at=datetime.fromisoformat(payload["submitted_at"]),
        deadline=datetime.fromisoformat(payload["deadline"]),
        created_at=now,
        updated_at=now,
    )
    repository.add(session, case)
    await session.flush()
    record(session, case, to_status=CaseStatus.OPEN, from_status=None, actor=None, at=now)
    announce(
        session,
        case,
        EventType.CASE_OPENED,
        {"item_code": case.item_code, "region_code": case.region_code},
        now,
    )
    return case


async def apply_supplement(session: AsyncSession, envelope: Envelope) -> None:
    case = await repository.active_for_application(session, envelope.application_id)
    if case is None:
        return
    now = now_utc()
    case.info_requested_at = None
    case.info_request = None
    case.updated_at = now
    record(
        session,
        case,
        to_status=case.status,
        from_status=case.status,
        actor=None,
        actor_role="citizen",
        reason="群众已补充材料",
        data={
            "message": envelope.payload.get("message"),
            "attachment_ids": envelope.payload.get("attachment_ids", []),
        },
        at=now,
    )


async def apply_withdrawal(session: AsyncSession, envelope: Envelope) -> None:
    """The citizen withdrew: the case ends without a decision of the department."""
    case = await repository.active_for_application(session, envelope.application_id)
    if case is None:
        return
    now = now_utc()
    previous = case.status
    case.status = CaseStatus.DECIDED
    case.outcome = "withdrawn"
    case.decision_reason = envelope.payload.get("reason")
    case.decided_at = now
    case.updated_at = now
    record(
        session,
        case,
        to_status=CaseStatus.DECIDED,
        from_status=previous,
        actor=None,
        actor_role="citizen",
        reason=f"群众撤回申请：{envelope.payload.get('reason') or '未说明理由'}",
        at=now,
    )


async def add_attachment(session: AsyncSession, envelope: Envelope) -> None:
    payload = envelope.payload
    await repository.add_attachment(
        session,
        CaseAttachment(
            id=uuid.UUID(payload["attachment_id"]),
            application_id=envelope.application_id,
            sha256=payload["sha256"],
            content_type=payload["content_type"],
            size=int(payload["size"]),
            filename=payload["filename"],
            added_at=envelope.occurred_at,
        ),
    )


HANDLERS = {
    EventType.APPLICATION_SUBMITTED: open_case,
    EventType.APPLICATION_SUPPLEMENTED: apply_supplement,
    EventType.APPLICATION_WITHDRAWN: apply_withdrawal,
    EventType.APPLICATION_ATTACHMENT_ADDED: add_attachment,
}
