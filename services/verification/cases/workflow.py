"""What clerks and supervisors do to a case, following the official procedure."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.accounts import repository as accounts
from services.verification.cases import procedure, repository
from services.verification.cases.notice import notice_text
from services.verification.cases.repository import Scope
from services.verification.cases.schemas import (
    AdvanceIn,
    AssignIn,
    DecideIn,
    FieldCheckIn,
    RequestInfoIn,
    RevealIn,
    TransferIn,
)
from services.verification.cases.service import get_case
from services.verification.cases.trail import announce, record
from services.verification.models import AuditAction, Case, StaffUser
from shared.auth import Role
from shared.catalog import Item, Stage, catalog
from shared.db import now_utc
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.events import EventType, route_stream
from shared.pii import PiiCipher


def item_of(case: Case) -> Item:
    item = catalog().item(case.item_code)
    if item is None:  # the catalog lost an item that still has cases: an operator error
        raise Conflict("该事项已不在目录中，请联系管理员", code="item_unknown")
    return item


def _require_assignee(case: Case, user: StaffUser) -> None:
    if not procedure.in_progress(case.status):
        raise Conflict("只能办理已认领、尚未办结的案件", code="case_not_in_progress")
    if case.assignee_id != user.id:
        raise Forbidden("该案件由其他工作人员办理", code="not_assignee")


async def _assigned_case(session: AsyncSession, user: StaffUser, case_id: uuid.UUID) -> Case:
    """The case, locked for the change, if `user` is the clerk working it."""
    case = await get_case(session, user, case_id, for_update=True)
    _require_assignee(case, user)
    return case


def _require_not_waiting(case: Case) -> None:
    if case.info_requested_at is not None:
        raise Conflict("正在等待群众补充材料，补充后才能继续办理", code="awaiting_information")


async def claim(session: AsyncSession, user: StaffUser, case_id: uuid.UUID) -> Case:
    if user.role != Role.CLERK:
        raise Forbidden("只有办事员可以认领案件", code="clerk_only")
    now = now_utc()
    case = await repository.claim(session, Scope.of(user), case_id, user.id, now)
    if case is None:
        current = await get_case(session, user, case_id)  # 404 when out of scope
        raise Conflict(
            "该案件已被认领或已办结", code="case_not_open", details={"status": current.status}
        )
    record(session, case, at=now, actor=user, from_status=procedure.OPEN)
    announce(session, case, EventType.CASE_CLAIMED, {"assignee_id": str(user.id)}, now)
    return case


async def release(session: AsyncSession, user: StaffUser, case_id: uuid.UUID) -> Case:
    """Give a claimed case back to the queue, before any stage work has begun."""
    case = await _assigned_case(session, user, case_id)
    if case.status != procedure.CLAIMED:
        raise Conflict("已开始办理的案件不能退回，请联系督办人员改派", code="case_not_releasable")
    now = now_utc()
    case.status = procedure.OPEN
    case.assignee_id = None
    case.claimed_at = None
    case.updated_at = now
    record(session, case, at=now, actor=user, from_status=procedure.CLAIMED)
    announce(session, case, EventType.CASE_RELEASED, {}, now)
    return case


def _stage_ready(case: Case, item: Item) -> None:
    """What the current stage needs before it can be passed."""
    if case.status == Stage.FIELD_CHECK and case.field_check is None:
        raise Conflict("请先填写实地调查记录", code="field_check_missing")
    notice_running = case.notice_ends_at is None or now_utc() < case.notice_ends_at
    if case.status == Stage.VILLAGE_REVIEW and notice_running:
        ends = case.notice_ends_at.isoformat() if case.notice_ends_at else None
        raise Conflict(
            f"公示期（{item.public_notice_days}天）未满，不能进入下一环节",
            code="public_notice_running",
            details={"notice_ends_at": ends},
        )


async def advance(
    session: AsyncSession,
    user: StaffUser,
    case_id: uuid.UUID,
    body: AdvanceIn,
    *,
    notice_day: timedelta,
) -> Case:
    """Pass the current stage and enter the next one. `notice_day` is how long one day of
    the public notice lasts (a real day but in a replay: `notice_day_seconds`)."""
    case = await _assigned_case(session, user, case_id)
    _require_not_waiting(case)
    item = item_of(case)
    following = procedure.next_status(item, case.status)
    if following is None:
        raise Conflict("已是最后一个环节，请作出决定", code="decision_due")
    _stage_ready(case, item)
    now = now_utc()
    passed = case.status
    case.status = following
    case.updated_at = now
    if following == Stage.VILLAGE_REVIEW:
        days = item.public_notice_days or 0
        case.notice_started_at = now
        case.notice_ends_at = now + days * notice_day
        case.notice_text = notice_text(case, item, starts=now, ends=case.notice_ends_at)
    record(session, case, at=now, actor=user, from_status=passed, reason=body.note or None)
    announce(
        session,
        case,
        EventType.CASE_STAGE_PASSED,
        {
            "stage": passed,
            "stage_name": procedure.step_name(passed),
            "next_stage": following,
            "next_stage_name": procedure.step_name(following),
        },
        now,
    )
    return case


async def record_field_check(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: FieldCheckIn
) -> Case:
    case = await _assigned_case(session, user, case_id)
    if case.status != Stage.FIELD_CHECK:
        raise Conflict("案件不在实地调查环节", code="not_in_field_check")
    now = now_utc()
    case.field_check = {**body.model_dump(mode="json"), "recorded_by": user.username}
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=user,
        action=AuditAction.FIELD_CHECK,
        reason=body.findings,
        data=case.field_check,
    )
    return case


async def request_info(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: RequestInfoIn
) -> Case:
    """Ask the citizen for information; the deadline clock stops until he answers."""
    case = await _assigned_case(session, user, case_id)
    if case.info_requested_at is not None:
        raise Conflict("已在等待群众补充材料", code="info_already_requested")
    now = now_utc()
    case.info_requested_at = now
    case.info_request = body.message
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=user,
        action=AuditAction.REQUEST_INFO,
        reason=body.message,
    )
    announce(session, case, EventType.CASE_INFO_REQUESTED, {"message": body.message}, now)
    return case


async def transfer(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: TransferIn
) -> Case:
    """Wrong department: this case ends; the other department's queue gets a new case for the
    application, with the same deadline, through its route stream."""
    case = await get_case(session, user, case_id, for_update=True)
    if user.role == Role.CLERK:
        _require_assignee(case, user)
    elif not procedure.in_progress(case.status) and case.status != procedure.OPEN:
        raise Conflict("案件已办结或已转办", code="case_ended")
    target = catalog().item(body.to_item_code)
    if target is None:
        raise InvalidInput("没有这个救助事项", code="item_unknown")
    if target.department == case.department:
        raise InvalidInput("只能转交其他部门的事项", code="same_department")
    now = now_utc()
    previous = case.status
    case.status = procedure.TRANSFERRED
    case.transferred_to_department = target.department
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=user,
        from_status=previous,
        reason=body.reason,
        data={"to_department": target.department, "to_item_code": target.code},
    )
    announce(
        session,
        case,
        EventType.CASE_TRANSFERRED,
        {
            "from_department": case.department,
            "to_department": target.department,
            "to_item_code": target.code,
            "reason": body.reason,
        },
        now,
    )
    # What the receiving department needs, as intake sent it (personal data still sealed).
    announce(
        session,
        case,
        EventType.CASE_TRANSFERRED,
        {
            "item_code": target.code,
            "region_code": case.region_code,
            "deadline": case.deadline.isoformat(),
            "submitted_at": case.submitted_at.isoformat(),
            "submitted_by_role": case.submitted_by_role,
            "applicant": {
                "name": case.applicant_name,
                "id_number_enc": case.id_number_enc,
                "phone_enc": case.phone_enc,
                "id_number_masked": case.id_number_masked,
                "phone_masked": case.phone_masked,
            },
            "household": case.household,
            "description": case.description,
            "form": case.form,
            "prescreen": case.prescreen,
            "transferred_from_case_id": str(case.id),
            "transfer_reason": body.reason,
        },
        now,
        stream=route_stream(target.department),
        department=target.department,
    )
    return case


async def decide(
    session: AsyncSession, user: StaffUser, case_id: uuid.UUID, body: DecideIn
) -> Case:
    """Approve with help measures at the last stage, or reject with a reason at any stage."""
    case = await _assigned_case(session, user, case_id)
    item = item_of(case)
    if body.outcome == "approved":
        # A citizen who never answers may be refused for want of material, not approved.
        _require_not_waiting(case)
        if not procedure.at_last_stage(item, case.status):
            raise Conflict(
                f"批准前须完成全部环节，当前环节：{procedure.stage_name(case.status)}",
                code="stages_remaining",
            )
        _stage_ready(case, item)
    now = now_utc()
    previous = case.status
    measures = [m.model_dump(mode="json") for m in body.measures]
    case.status = procedure.DECIDED
    case.outcome = body.outcome
    case.decision_reason = body.reason or None
    case.measures = measures
    case.decided_at = now
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=user,
        from_status=previous,
        reason=body.reason or None,
        data={"outcome": body.outcome, "measures": measures},
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
    return case


async def assign(
    session: AsyncSession, supervisor: StaffUser, case_id: uuid.UUID, body: AssignIn
) -> Case:
    """A supervisor (督办) gives a case to another clerk of the department and county."""
    if supervisor.role not in (Role.SUPERVISOR, Role.ADMIN):
        raise Forbidden("只有督办人员可以改派案件", code="supervisor_only")
    case = await get_case(session, supervisor, case_id, for_update=True)
    if case.status in procedure.ENDED:
        raise Conflict("案件已办结或已转办", code="case_ended")
    clerk = await accounts.by_username(session, body.username)
    if (
        clerk is None
        or clerk.disabled
        or clerk.role != Role.CLERK
        or clerk.department != case.department
        or clerk.region_code != case.region_code
    ):
        raise InvalidInput("只能改派给本部门、本县的在岗办事员", code="assignee_invalid")
    now = now_utc()
    previous_assignee = case.assignee_id
    if case.status == procedure.OPEN:
        case.status = procedure.CLAIMED
        case.claimed_at = now
    case.assignee_id = clerk.id
    case.updated_at = now
    record(
        session,
        case,
        at=now,
        actor=supervisor,
        action=AuditAction.ASSIGN,
        reason=body.reason or None,
        data={
            "from_assignee": str(previous_assignee) if previous_assignee else None,
            "to_assignee": str(clerk.id),
            "to_username": clerk.username,
        },
    )
    announce(session, case, EventType.CASE_ASSIGNED, {"assignee_id": str(clerk.id)}, now)
    return case


async def reveal(
    session: AsyncSession,
    user: StaffUser,
    case_id: uuid.UUID,
    body: RevealIn,
    cipher: PiiCipher,
) -> str:
    """Show one ID number or phone in full, for a stated reason, and leave an audit entry."""
    if user.role == Role.ADMIN:
        raise Forbidden("管理员不查看群众的完整身份信息", code="not_for_admins")
    case = await get_case(session, user, case_id)
    if user.role == Role.CLERK and case.assignee_id != user.id:
        raise Forbidden("只有承办人可以查看完整信息", code="not_assignee")
    sealed = case.id_number_enc if body.field == "id_number" else case.phone_enc
    try:
        value = cipher.decrypt(sealed, purpose=body.field)
    except KeyError as exc:
        raise NotFound("该信息的密钥已停用，请联系管理员", code="key_unavailable") from exc
    record(
        session,
        case,
        at=now_utc(),
        actor=user,
        action=AuditAction.REVEAL,
        reason=body.reason,
        data={"field": body.field},
    )
    return value
