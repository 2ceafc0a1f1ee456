"""What arrives from intake on the department's route stream: new applications, answers to
requests for information, withdrawals and attachments."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.cases import procedure, repository
from services.verification.cases.deadlines import resume_clock
from services.verification.cases.trail import announce, record
from services.verification.models import AuditAction, Case, CaseAttachment, OutboxMessage
from shared.db import now_utc
from shared.events import EVENTS_STREAM, Envelope, EventType
from shared.outbox import republish

_OPENED = "verification.opened_cases"
_OPENING = (EventType.APPLICATION_SUBMITTED, EventType.CASE_TRANSFERRED)


async def open_cases(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """Before a consumer's batch is handled: write the cases its route messages open, all
    in one statement (the unique route event decides redeliveries). `open_case` then
    finds each one written here instead of writing it alone."""
    now = now_utc()
    cases = [_new_case(envelope, now) for envelope in envelopes if envelope.type in _OPENING]
    written = await repository.insert_new(session, cases)
    session.info[_OPENED] = {c.route_event_id: c for c in cases if c.route_event_id in written}


async def open_case(session: AsyncSession, envelope: Envelope) -> Case | None:
    """Open the case for a routed application, or one transferred from another department;
    a redelivered route message opens nothing new (returns None).

    The case row is written with the id of the event that will announce it, by
    `open_cases` for the whole batch, or here for a message handled on its own. Its audit
    entry and announcement are added to the session and written with the rest of the
    consumer's batch at commit.
    """
    opened: dict[uuid.UUID, Case] | None = session.info.get(_OPENED)
    if opened is not None:
        case = opened.get(envelope.event_id)
        if case is None:
            return None
    else:
        case = _new_case(envelope, now_utc())
        if not await repository.insert_new(session, [case]):
            return None
    now = case.created_at
    announce(
        session,
        case,
        EventType.CASE_OPENED,
        _opened_payload(case),
        now,
        event_id=case.opened_event_id,
    )
    record(
        session,
        case,
        at=now,
        actor=None,
        from_status=None,
        reason=f"由其他部门转入：{envelope.payload.get('transfer_reason')}"
        if case.transferred_from_case_id
        else None,
    )
    return case


def _new_case(envelope: Envelope, now: datetime) -> Case:
    """The case a route message opens, not yet written (outside the session)."""
    payload = envelope.payload
    applicant = payload["applicant"]
    return Case(
        id=uuid.uuid4(),
        opened_event_id=uuid.uuid4(),
        application_id=envelope.application_id,
        route_event_id=envelope.event_id,
        department=envelope.department,
        item_code=payload["item_code"],
        region_code=payload["region_code"],
        status=procedure.OPEN,
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
        transferred_from_case_id=uuid.UUID(payload["transferred_from_case_id"])
        if payload.get("transferred_from_case_id")
        else None,
        created_at=now,
        updated_at=now,
    )


def _opened_payload(case: Case) -> dict[str, str]:
    return {"item_code": case.item_code, "region_code": case.region_code}


async def reannounce_opened(session: AsyncSession, envelope: Envelope, stream: str) -> None:
    """A route message seen again: intake is asking because it never heard the case was
    opened (Redis may have lost that event). Publish the original case.opened again."""
    if envelope.type not in _OPENING:
        return
    if envelope.event_id in session.info.get(_OPENED, ()):
        return  # a copy in the batch that opened the case: its announcement is on its way
    case = await repository.by_route_event(session, envelope.event_id)
    if case is None or case.opened_event_id is None:
        return
    await republish(
        session,
        OutboxMessage,
        EVENTS_STREAM,
        Envelope(
            event_id=case.opened_event_id,
            type=EventType.CASE_OPENED,
            application_id=case.application_id,
            department=case.department,
            occurred_at=case.created_at,
            payload={"case_id": str(case.id), **_opened_payload(case)},
        ),
    )


async def apply_supplement(session: AsyncSession, envelope: Envelope) -> None:
    case = await repository.active_for_application(session, envelope.application_id)
    if case is None:
        return
    now = now_utc()
    record(
        session,
        case,
        at=now,
        actor=None,
        actor_role="citizen",
        action=AuditAction.SUPPLEMENT,
        reason=envelope.payload.get("message"),
        data={
            "message": envelope.payload.get("message"),
            "attachment_ids": envelope.payload.get("attachment_ids", []),
        },
    )
    resume_clock(session, case, now)


async def apply_withdrawal(session: AsyncSession, envelope: Envelope) -> None:
    """The citizen withdrew: the case ends without a decision of the department."""
    case = await repository.active_for_application(session, envelope.application_id)
    if case is None:
        return
    now = now_utc()
    previous = case.status
    case.status = procedure.DECIDED
    case.outcome = "withdrawn"
    case.decision_reason = envelope.payload.get("reason")
    case.decided_at = now
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=None,
        actor_role="citizen",
        from_status=previous,
        reason=f"群众撤回申请：{envelope.payload.get('reason') or '未说明理由'}",
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
    EventType.CASE_TRANSFERRED: open_case,
    EventType.APPLICATION_SUPPLEMENTED: apply_supplement,
    EventType.APPLICATION_WITHDRAWN: apply_withdrawal,
    EventType.APPLICATION_ATTACHMENT_ADDED: add_attachment,
}
