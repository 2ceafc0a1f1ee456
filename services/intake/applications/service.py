"""Rules of the citizen's side: submitting, reading, and following what departments do."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.applications import repository
from services.intake.applications.schemas import (
    ApplicantOut,
    ApplicationCreate,
    ApplicationCreated,
    ApplicationDetail,
    ApplicationPage,
    ApplicationSummary,
    TimelineEntryOut,
)
from services.intake.models import Application, ApplicationStatus, OutboxMessage, Outcome
from shared.auth import Principal
from shared.catalog import catalog
from shared.errors import AppError, Conflict, InvalidInput, NotFound
from shared.events import EVENTS_STREAM, Envelope, EventType, route_stream
from shared.outbox import enqueue
from shared.pagination import decode_keyset, split_page
from shared.pii import PiiCipher, mask_id_number, mask_phone

STATUS_LABELS = {
    ApplicationStatus.SUBMITTED: "已提交，等待受理",
    ApplicationStatus.ACCEPTED: "已受理",
    ApplicationStatus.IN_REVIEW: "审核中",
    ApplicationStatus.NEEDS_INFO: "需要补充材料",
}
OUTCOME_LABELS = {
    Outcome.APPROVED: "已办结：审核通过",
    Outcome.REJECTED: "已办结：未通过",
    Outcome.WITHDRAWN: "已撤回",
}
# Status never moves back: a late or reordered event only adds to the timeline.
_STATUS_RANK = {
    ApplicationStatus.SUBMITTED: 0,
    ApplicationStatus.ACCEPTED: 1,
    ApplicationStatus.IN_REVIEW: 2,
    ApplicationStatus.NEEDS_INFO: 2,
    ApplicationStatus.CLOSED: 9,
}


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"
    message = "该 Idempotency-Key 已用于另一份不同的申请，请为新申请生成新的 Key"


def status_label(status: str, outcome: str | None) -> str:
    if status == ApplicationStatus.CLOSED and outcome is not None:
        return OUTCOME_LABELS[Outcome(outcome)]
    return STATUS_LABELS.get(ApplicationStatus(status), status)


def _request_hash(body: ApplicationCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    session: AsyncSession,
    *,
    principal: Principal,
    body: ApplicationCreate,
    idempotency_key: str,
    cipher: PiiCipher,
) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body). The same key replays the first answer."""
    owner = principal.subject
    request_hash = _request_hash(body)
    if not await repository.claim_idempotency_key(session, owner, idempotency_key, request_hash):
        return await _replay(session, owner, idempotency_key, request_hash)

    item = catalog().item(body.item_code)
    if item is None:
        raise InvalidInput(
            "没有这个救助事项，请从事项目录中选择",
            code="item_unknown",
            details=[{"field": "item_code", "code": "item_unknown", "message": "没有这个救助事项"}],
        )
    id_number_hash = cipher.blind_index(body.applicant.id_number, purpose="id_number")
    existing = await repository.find_open_duplicate(session, id_number_hash, item.code)
    if existing is not None:
        raise _duplicate(existing)

    now = datetime.now(UTC)
    application = Application(
        id=uuid.uuid4(),
        item_code=item.code,
        department=item.department,
        status=ApplicationStatus.SUBMITTED,
        owner_openid=owner,
        submitted_by=principal.subject,
        submitted_by_role=principal.role.value,
        applicant_name=body.applicant.name,
        id_number_enc=cipher.encrypt(body.applicant.id_number, purpose="id_number"),
        id_number_hash=id_number_hash,
        phone_enc=cipher.encrypt(body.applicant.phone, purpose="phone"),
        id_number_masked=mask_id_number(body.applicant.id_number),
        phone_masked=mask_phone(body.applicant.phone),
        region_code=body.household.region_code,
        household=body.household.model_dump(mode="json"),
        annual_income_per_capita=body.household.annual_income_per_capita,
        description=body.description,
        deadline=now + timedelta(days=catalog().deadline_days(item)),
        created_at=now,
        updated_at=now,
    )
    repository.add_application(session, application)
    repository.add_timeline(
        session,
        application.id,
        kind="submitted",
        title="申请已提交",
        occurred_at=now,
        detail=f"您申请的「{item.name}」已提交，将转交{_department_name(item.department)}办理。",
    )
    _announce_submission(session, application, item_name=item.name)
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent submission for the same person and item won the unique index; the
        # unit of work rolls the whole request back.
        raise Conflict("该事项已有一份正在办理的申请", code="duplicate_application") from exc

    created = ApplicationCreated(
        id=application.id,
        status=application.status,
        item_code=application.item_code,
        department=application.department,
        deadline=application.deadline,
        created_at=application.created_at,
    ).model_dump(mode="json")
    await repository.store_idempotent_response(session, owner, idempotency_key, 201, created)
    return 201, created


def _duplicate(existing: uuid.UUID) -> Conflict:
    return Conflict(
        "您已有一份同一事项的申请正在办理，请勿重复提交",
        code="duplicate_application",
        details={"application_id": str(existing)},
    )


async def _replay(
    session: AsyncSession, owner: str, key: str, request_hash: str
) -> tuple[int, dict[str, Any]]:
    record = await repository.get_idempotency_record(session, owner, key)
    if record is None or record.status_code is None or record.response_body is None:
        # Only possible if the first request's transaction is this one: treat as a conflict.
        raise Conflict("该申请正在处理中，请稍后查询", code="request_in_progress")
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return record.status_code, record.response_body


def _department_name(code: str) -> str:
    department = catalog().department(code)
    return department.full_name if department else code


def _announce_submission(
    session: AsyncSession, application: Application, *, item_name: str
) -> None:
    """Two messages, one transaction with the application: the route message carries what the
    department needs (personal data still encrypted); the event carries no personal data."""
    route = Envelope(
        type=EventType.APPLICATION_SUBMITTED,
        application_id=application.id,
        department=application.department,
        occurred_at=application.created_at,
        payload={
            "item_code": application.item_code,
            "item_name": item_name,
            "region_code": application.region_code,
            "deadline": application.deadline.isoformat(),
            "submitted_at": application.created_at.isoformat(),
            "submitted_by_role": application.submitted_by_role,
            "applicant": {
                "name": application.applicant_name,
                "id_number_enc": application.id_number_enc,
                "phone_enc": application.phone_enc,
                "id_number_masked": application.id_number_masked,
                "phone_masked": application.phone_masked,
            },
            "household": application.household,
            "description": application.description,
        },
    )
    enqueue(session, OutboxMessage, route_stream(application.department), route)
    enqueue(
        session,
        OutboxMessage,
        EVENTS_STREAM,
        Envelope(
            type=EventType.APPLICATION_SUBMITTED,
            application_id=application.id,
            department=application.department,
            occurred_at=application.created_at,
            payload={
                "item_code": application.item_code,
                "region_code": application.region_code,
                "deadline": application.deadline.isoformat(),
                "submitted_at": application.created_at.isoformat(),
            },
        ),
    )


def _summary(application: Application) -> ApplicationSummary:
    item = catalog().item(application.item_code)
    return ApplicationSummary(
        id=application.id,
        item_code=application.item_code,
        item_name=item.name if item else application.item_code,
        department=application.department,
        status=application.status,
        status_label=status_label(application.status, application.outcome),
        outcome=application.outcome,
        deadline=application.deadline,
        created_at=application.created_at,
        updated_at=application.updated_at,
    )


async def list_mine(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> ApplicationPage:
    rows = await repository.list_owned(
        session, principal.subject, limit=limit + 1, after=decode_keyset(cursor)
    )
    page, next_cursor = split_page(rows, limit, lambda a: (a.created_at, a.id))
    return ApplicationPage(items=[_summary(a) for a in page], next_cursor=next_cursor)


async def get_mine(
    session: AsyncSession, principal: Principal, application_id: uuid.UUID
) -> ApplicationDetail:
    application = await repository.get_owned(session, application_id, principal.subject)
    if application is None:
        # Someone else's application is "not found", never "forbidden": no existence leak.
        raise NotFound("找不到这份申请")
    entries = await repository.timeline(session, application.id)
    return ApplicationDetail(
        **_summary(application).model_dump(),
        applicant=ApplicantOut(
            name=application.applicant_name,
            id_number=application.id_number_masked,
            phone=application.phone_masked,
        ),
        household=application.household,
        description=application.description,
        decision=application.decision,
        timeline=[
            TimelineEntryOut(kind=e.kind, title=e.title, detail=e.detail, occurred_at=e.occurred_at)
            for e in entries
        ],
    )


async def apply_case_event(session: AsyncSession, envelope: Envelope) -> None:
    """Follow what the department did, in the citizen's words."""
    application = await repository.get_for_update(session, envelope.application_id)
    if application is None:
        return
    payload = envelope.payload
    department = _department_name(envelope.department)
    new_status: ApplicationStatus | None = None
    match envelope.type:
        case EventType.CASE_OPENED:
            new_status = ApplicationStatus.ACCEPTED
            application.case_id = uuid.UUID(payload["case_id"])
            application.routed_at = application.routed_at or envelope.occurred_at
            title, detail = "已受理", f"{department}已受理您的申请，将在办理时限内完成核实。"
        case EventType.CASE_CLAIMED:
            new_status = ApplicationStatus.IN_REVIEW
            title, detail = "审核中", f"{department}工作人员已开始核实您的申请。"
        case EventType.CASE_DECIDED:
            new_status = ApplicationStatus.CLOSED
            approved = payload.get("outcome") == Outcome.APPROVED
            title = "审核通过" if approved else "未通过审核"
            detail = (
                f"{department}已批准您的申请。"
                if approved
                else f"{department}未批准您的申请。原因：{payload.get('reason') or '未说明'}"
            )
        case _:
            return
    current = ApplicationStatus(application.status)
    if current != ApplicationStatus.CLOSED and _STATUS_RANK[new_status] >= _STATUS_RANK[current]:
        application.status = new_status
        if new_status == ApplicationStatus.CLOSED:
            application.outcome = payload.get("outcome")
            application.closed_at = envelope.occurred_at
            application.decision = {
                "outcome": payload.get("outcome"),
                "reason": payload.get("reason"),
                "measures": payload.get("measures", []),
                "decided_at": envelope.occurred_at.isoformat(),
            }
        application.updated_at = datetime.now(UTC)
    repository.add_timeline(
        session,
        application.id,
        kind=envelope.type,
        title=title,
        detail=detail,
        occurred_at=envelope.occurred_at,
        source_event_id=envelope.event_id,
    )
