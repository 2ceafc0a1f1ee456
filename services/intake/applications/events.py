"""What intake does with the departments' events: the citizen's status and timeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.applications import repository
from services.intake.applications.service import department_name
from services.intake.models import ApplicationStatus, Outcome
from shared.events import Envelope, EventType

# Status never moves back: a late or reordered event only adds to the timeline.
_STATUS_RANK = {
    ApplicationStatus.SUBMITTED: 0,
    ApplicationStatus.ACCEPTED: 1,
    ApplicationStatus.IN_REVIEW: 2,
    ApplicationStatus.NEEDS_INFO: 2,
    ApplicationStatus.CLOSED: 9,
}


def _describe(envelope: Envelope) -> tuple[ApplicationStatus | None, str, str] | None:  # noqa: PLR0911
    """The new status (None: unchanged), the title and the plain-Chinese detail."""
    payload = envelope.payload
    department = department_name(envelope.department)
    match envelope.type:
        case EventType.CASE_OPENED:
            return (
                ApplicationStatus.ACCEPTED,
                "已受理",
                f"{department}已受理您的申请，将在办理时限内完成核实。",
            )
        case EventType.CASE_CLAIMED:
            return (
                ApplicationStatus.IN_REVIEW,
                "审核中",
                f"{department}工作人员已开始核实您的申请。",
            )
        case EventType.CASE_INFO_REQUESTED:
            return (
                ApplicationStatus.NEEDS_INFO,
                "需要补充材料",
                f"{department}请您补充：{payload.get('message') or '（未说明）'}。"
                "补充后办理时限继续计算。",
            )
        case EventType.CASE_STAGE_PASSED:
            return (
                None,
                "办理进度",
                f"{department}已完成「{payload.get('stage_name') or '一个环节'}」。",
            )
        case EventType.CASE_TRANSFERRED:
            target = department_name(str(payload.get("to_department", "")))
            return (
                None,
                "已转办",
                f"您的申请已由{department}转交{target}办理，办理时限不变。",
            )
        case EventType.CASE_DEADLINE_CHANGED:
            return None, "办理时限顺延", "您补充材料期间办理时限暂停，已相应顺延。"
        case EventType.CASE_DECIDED:
            approved = payload.get("outcome") == Outcome.APPROVED
            if approved:
                return ApplicationStatus.CLOSED, "审核通过", f"{department}已批准您的申请。"
            return (
                ApplicationStatus.CLOSED,
                "未通过审核",
                f"{department}未批准您的申请。原因：{payload.get('reason') or '未说明'}",
            )
    return None


async def lock_for_case_events(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Before a batch of case events: lock and load their applications in one query, which
    `apply_case_event` then takes instead of selecting each one again."""
    await repository.lock_for_update(session, (e.application_id for e in envelopes))


async def apply_case_event(session: AsyncSession, envelope: Envelope) -> None:
    application = await repository.get_for_update(session, envelope.application_id)
    if application is None:
        return
    described = _describe(envelope)
    if described is None:
        return
    new_status, title, detail = described
    payload = envelope.payload
    current = ApplicationStatus(application.status)
    if (
        new_status is not None
        and current != ApplicationStatus.CLOSED
        and _STATUS_RANK[new_status] >= _STATUS_RANK[current]
    ):
        application.status = new_status
        application.updated_at = datetime.now(UTC)
        if envelope.type == EventType.CASE_OPENED:
            application.case_id = uuid.UUID(payload["case_id"])
            application.routed_at = application.routed_at or envelope.occurred_at
        if new_status == ApplicationStatus.NEEDS_INFO:
            application.info_request = payload.get("message")
        if new_status == ApplicationStatus.CLOSED:
            application.outcome = payload.get("outcome")
            application.closed_at = envelope.occurred_at
            application.decision = {
                "outcome": payload.get("outcome"),
                "reason": payload.get("reason"),
                "measures": payload.get("measures", []),
                "decided_at": envelope.occurred_at.isoformat(),
            }
    if envelope.type == EventType.CASE_TRANSFERRED and payload.get("to_department"):
        application.department = str(payload["to_department"])
        application.item_code = str(payload.get("to_item_code") or application.item_code)
    if envelope.type == EventType.CASE_DEADLINE_CHANGED:
        application.deadline = datetime.fromisoformat(payload["deadline"])
    repository.add_timeline(
        session,
        application.id,
        kind=envelope.type,
        title=title,
        detail=detail,
        occurred_at=envelope.occurred_at,
        source_event_id=envelope.event_id,
    )
