from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, cast, extract, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.metrics.schemas import GroupBy
from services.notify.models import ApplicationFact

F = ApplicationFact


def _group_column(group_by: GroupBy | None, timezone: str) -> Any:
    match group_by:
        case GroupBy.DEPARTMENT:
            return F.department
        case GroupBy.ITEM:
            return F.item_code
        case GroupBy.REGION:
            return F.region_code
        case GroupBy.DAY:
            return cast(func.timezone(timezone, F.received_at), Date)
        case None:
            return None


async def closure_rows(
    session: AsyncSession,
    *,
    group_by: GroupBy | None,
    received_from: date | None,
    received_to: date | None,
    timezone: str,
    now: datetime,
) -> list[RowMapping]:
    closed = F.closed_at.is_not(None)
    handling_seconds = extract("epoch", F.closed_at - F.received_at)
    columns = [
        func.count().label("received"),
        func.count().filter(closed).label("closed"),
        func.count().filter(F.outcome == "approved").label("approved"),
        func.count().filter(F.outcome == "rejected").label("rejected"),
        func.count().filter(F.outcome == "withdrawn").label("withdrawn"),
        func.count().filter(F.closed_at.is_(None), F.deadline < now).label("overdue"),
        func.count().filter(closed, F.closed_at <= F.deadline).label("on_time"),
        func.percentile_cont(0.5)
        .within_group(handling_seconds)
        .filter(closed)
        .label("median_seconds"),
        func.avg(F.rating).label("rating_average"),
        func.count(F.rating).label("rating_count"),
    ]
    key = _group_column(group_by, timezone)
    query = select(*columns).select_from(F)
    if key is not None:
        query = select(key.label("key"), *columns).group_by(key).order_by(key)
    local_day = cast(func.timezone(timezone, F.received_at), Date)
    if received_from is not None:
        query = query.where(local_day >= received_from)
    if received_to is not None:
        query = query.where(local_day <= received_to)
    return list((await session.execute(query)).mappings().all())
