"""催办 and 督办: remind the clerk before a case's deadline, escalate to the supervisors of the
department and prefecture once it is overdue. Each exactly once per case (unique index)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.models import ApplicationFact, StaffReminder
from shared.auth import Principal, Role
from shared.catalog import catalog
from shared.db import now_utc, unit_of_work
from shared.events import Envelope
from shared.regions import regions

log = structlog.get_logger(__name__)


def _item_name(code: str) -> str:
    item = catalog().item(code)
    return item.name if item else code


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%m月%d日 %H:%M")


async def _add(session: AsyncSession, reminder: StaffReminder) -> bool:
    inserted = await session.scalar(
        insert(StaffReminder)
        .values(
            id=reminder.id,
            case_id=reminder.case_id,
            kind=reminder.kind,
            application_id=reminder.application_id,
            department=reminder.department,
            region_code=reminder.region_code,
            assignee_id=reminder.assignee_id,
            text=reminder.text,
            deadline=reminder.deadline,
            created_at=reminder.created_at,
        )
        .on_conflict_do_nothing()
        .returning(StaffReminder.id)
    )
    return inserted is not None


async def escalate_overdue(
    session: AsyncSession, envelope: Envelope, fact: ApplicationFact, zone: ZoneInfo
) -> None:
    case_id = uuid.UUID(envelope.payload["case_id"])
    region = regions()
    county = region.full_name(fact.region_code) if region.is_county(fact.region_code) else ""
    await _add(
        session,
        StaffReminder(
            id=uuid.uuid4(),
            case_id=case_id,
            kind="overdue",
            application_id=fact.application_id,
            department=fact.department,
            region_code=fact.region_code,
            assignee_id=fact.assignee_id,
            text=(
                f"督办：{county}「{_item_name(fact.item_code)}」案件已超过办理时限"
                f"（{_local(fact.deadline, zone)}），请督促办理。"
            ),
            deadline=fact.deadline,
            created_at=now_utc(),
        ),
    )


async def remind_due_soon(
    sessionmaker: async_sessionmaker[AsyncSession], *, before: timedelta, zone: ZoneInfo
) -> int:
    """One reminder to the clerk of each case whose deadline is within `before`."""
    created = 0
    async with unit_of_work(sessionmaker) as session:
        now = now_utc()
        already = exists().where(
            StaffReminder.case_id == ApplicationFact.case_id, StaffReminder.kind == "due_soon"
        )
        due: ColumnElement[bool] = ApplicationFact.deadline <= now + before
        facts = (
            await session.scalars(
                select(ApplicationFact)
                .where(
                    ApplicationFact.closed_at.is_(None),
                    ApplicationFact.case_id.is_not(None),
                    ApplicationFact.waiting_for_citizen.is_(False),
                    ApplicationFact.deadline > now,
                    due,
                    ~already,
                )
                .limit(1000)
            )
        ).all()
        for fact in facts:
            assert fact.case_id is not None
            hours = max(1, int((fact.deadline - now).total_seconds() // 3600))
            if await _add(
                session,
                StaffReminder(
                    id=uuid.uuid4(),
                    case_id=fact.case_id,
                    kind="due_soon",
                    application_id=fact.application_id,
                    department=fact.department,
                    region_code=fact.region_code,
                    assignee_id=fact.assignee_id,
                    text=(
                        f"催办：「{_item_name(fact.item_code)}」案件将于"
                        f"{_local(fact.deadline, zone)}到期（约{hours}小时后），请尽快办理。"
                    ),
                    deadline=fact.deadline,
                    created_at=now,
                ),
            ):
                created += 1
    if created:
        log.info("reminders_created", count=created)
    return created


def visible_to(
    role: Role, subject: str, department: str | None, region: str | None
) -> list[ColumnElement[bool]]:
    """A clerk sees reminders of his cases; a supervisor the escalations of his department
    and prefecture; an admin all."""
    if role is Role.ADMIN:
        return []
    if role is Role.SUPERVISOR:
        prefix = (region or "")[:4]
        return [
            StaffReminder.department == (department or ""),
            StaffReminder.region_code.startswith(prefix),
        ]
    return [StaffReminder.assignee_id == uuid.UUID(subject)]


async def reminders_for(
    session: AsyncSession, principal: Principal, *, kind: str | None, limit: int
) -> list[StaffReminder]:
    query = select(StaffReminder).where(
        *visible_to(principal.role, principal.subject, principal.department, principal.region)
    )
    if kind:
        query = query.where(StaffReminder.kind == kind)
    return list(
        (await session.scalars(query.order_by(StaffReminder.created_at.desc()).limit(limit))).all()
    )
