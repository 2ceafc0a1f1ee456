"""Reading cases: the queue, one case, its history and attachments, always within the
caller's scope (department and region)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.cases import procedure, repository
from services.verification.cases.repository import Scope
from services.verification.cases.schemas import (
    ApplicantMasked,
    AuditEntryOut,
    CaseAttachmentOut,
    CaseDetail,
    CasePage,
    CaseSummary,
    NoticeOut,
    StageOut,
)
from services.verification.models import Case, StaffUser
from shared.catalog import catalog
from shared.db import now_utc
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.pagination import decode_keyset, split_page
from shared.regions import regions


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
        "status_label": procedure.stage_name(case.status),
        "applicant": ApplicantMasked(
            name=case.applicant_name, id_number=case.id_number_masked, phone=case.phone_masked
        ),
        "assignee_id": case.assignee_id,
        "submitted_at": case.submitted_at,
        "deadline": case.deadline,
        "overdue": case.status not in procedure.ENDED
        and case.info_requested_at is None
        and case.deadline < now,
    }


def _stages(case: Case) -> list[StageOut]:
    item = catalog().item(case.item_code)
    if item is None:
        return []
    steps = procedure.sequence(item)
    if case.status == procedure.DECIDED:
        position = len(steps)
    elif case.status in steps:
        position = steps.index(case.status)
    else:  # open or transferred
        position = -1 if case.status == procedure.OPEN else 0
    return [
        StageOut(
            status=step,
            name=procedure.stage_name(step),
            state="done" if i < position else "current" if i == position else "pending",
        )
        for i, step in enumerate(steps)
    ]


async def detail(session: AsyncSession, case: Case) -> CaseDetail:
    attachments = case.attachments
    if attachments is None:  # loaded without them (repository.get_in_scope has them)
        rows = await repository.attachments_of(session, case.application_id)
        attachments = [row._asdict() for row in rows]
    return CaseDetail(
        **_summary_fields(case, now_utc()),
        household=case.household,
        description=case.description,
        form=case.form,
        prescreen=case.prescreen,
        submitted_by_role=case.submitted_by_role,
        info_request=case.info_request,
        info_requested_at=case.info_requested_at,
        paused_seconds=case.paused_seconds,
        stages=_stages(case),
        field_check=case.field_check,
        notice_ends_at=case.notice_ends_at,
        transferred_to_department=case.transferred_to_department,
        attachments=[CaseAttachmentOut.model_validate(a) for a in attachments],
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
    region: str | None = None,
    limit: int,
    cursor: str | None,
) -> CasePage:
    if statuses:
        unknown = set(statuses) - set(procedure.STATUS_LABELS)
        if unknown:
            raise InvalidInput("状态参数无效", code="status_invalid", details=sorted(unknown))
    scope = Scope.of(user)
    if region is not None and not scope.covers_region(region):
        raise Forbidden("该地区不在您的管辖范围内", code="region_out_of_scope")
    now = now_utc()
    rows = await repository.list_in_scope(
        session,
        scope,
        statuses=statuses,
        item_code=item_code,
        region=region,
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


async def attachment(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, attachment_id: uuid.UUID
) -> Row[Any]:
    case = await get_case(session, user, case_id)
    for item in await repository.attachments_of(session, case.application_id):
        if item.id == attachment_id:
            return item
    raise NotFound("找不到该附件")


async def history(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID
) -> list[AuditEntryOut]:
    case = await get_case(session, user, case_id)
    return [
        AuditEntryOut(
            action=entry.action,
            from_status=entry.from_status,
            to_status=entry.to_status,
            actor_name=entry.actor_name,
            actor_role=entry.actor_role,
            reason=entry.reason,
            data=entry.data,
            occurred_at=entry.occurred_at,
        )
        for entry in await repository.audit_entries(session, case.id)
    ]


async def notice(session: AsyncSession, user: StaffUser, case_id: uuid.UUID) -> NoticeOut:
    case = await get_case(session, user, case_id)
    if case.notice_text is None or case.notice_started_at is None or case.notice_ends_at is None:
        raise Conflict("该案件尚未进入村评议公示环节", code="no_public_notice")
    return NoticeOut(
        text=case.notice_text,
        starts_at=case.notice_started_at,
        ends_at=case.notice_ends_at,
        running=now_utc() < case.notice_ends_at,
    )
