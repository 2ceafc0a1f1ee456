"""The 15-day limit: the clock stops while the citizen is asked for information, and a case
past its deadline is announced once (case.overdue) for supervisors (督办) and notify."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.verification.cases import repository
from services.verification.cases.trail import announce, record
from services.verification.models import AuditAction, Case
from shared.db import now_utc, unit_of_work
from shared.events import EventType

log = structlog.get_logger(__name__)


def resume_clock(session: AsyncSession, case: Case, at: datetime) -> None:
    """The citizen answered: move the deadline by the time the clock stood still."""
    if case.info_requested_at is None:
        return
    paused = at - case.info_requested_at
    case.deadline = case.deadline + paused
    case.paused_seconds += int(paused.total_seconds())
    case.info_requested_at = None
    case.info_request = None
    case.updated_at = at
    record(
        session,
        case,
        at=at,
        actor=None,
        actor_role="system",
        action=AuditAction.DEADLINE,
        reason="群众已补充材料，办理时限顺延",
        data={"paused_seconds": int(paused.total_seconds()), "deadline": case.deadline.isoformat()},
    )
    announce(
        session,
        case,
        EventType.CASE_DEADLINE_CHANGED,
        {"deadline": case.deadline.isoformat(), "paused_seconds": int(paused.total_seconds())},
        at,
    )


async def announce_overdue(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch_size: int = 500
) -> int:
    """Flag the cases that went past their deadline since the last sweep, each exactly once
    (several workers may sweep at once: rows are taken with SKIP LOCKED)."""
    total = 0
    while True:
        async with unit_of_work(sessionmaker) as session:
            now = now_utc()
            cases = await repository.newly_overdue(session, now, limit=batch_size)
            for case in cases:
                case.overdue_announced_at = now
                record(
                    session,
                    case,
                    at=now,
                    actor=None,
                    actor_role="system",
                    action=AuditAction.OVERDUE,
                    reason="超过办理时限",
                )
                announce(
                    session,
                    case,
                    EventType.CASE_OVERDUE,
                    {
                        "deadline": case.deadline.isoformat(),
                        "region_code": case.region_code,
                        "item_code": case.item_code,
                        "status": case.status,
                        "assignee_id": str(case.assignee_id) if case.assignee_id else None,
                    },
                    now,
                )
        total += len(cases)
        if len(cases) < batch_size:
            break
    if total:
        log.info("cases_overdue_announced", count=total)
    return total
