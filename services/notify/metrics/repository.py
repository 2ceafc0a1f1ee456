"""Queries of the closure-rate API: counters from the rollups (kept incrementally), the
median handling time from the facts (a percentile cannot be summed)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Date, cast, extract, func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.metrics.schemas import GroupBy
from services.notify.models import ApplicationFact, ClosureRollup

R = ClosureRollup
F = ApplicationFact

_SUMS = [
    func.coalesce(func.sum(getattr(R, name)), 0).label(name)
    for name in (
        "received",
        "approved",
        "rejected",
        "withdrawn",
        "on_time",
        "overdue_open",
        "rating_sum",
        "rating_count",
        "closed_on_day",
    )
]


def _rollup_key(group_by: GroupBy | None) -> tuple[str, Any]:
    match group_by:
        case GroupBy.DEPARTMENT:
            return "item", R.department
        case GroupBy.ITEM:
            return "item", R.key
        case GroupBy.REGION:
            return "region", R.key
        case GroupBy.DAY:
            return "item", R.day
        case None:
            return "item", None


async def counters(
    session: AsyncSession,
    *,
    group_by: GroupBy | None,
    received_from: date | None,
    received_to: date | None,
) -> list[RowMapping]:
    dimension, key = _rollup_key(group_by)
    query = select(*_SUMS).where(R.dimension == dimension)
    if key is not None:
        query = select(key.label("key"), *_SUMS).where(R.dimension == dimension)
        query = query.group_by(key).order_by(key)
    if received_from is not None:
        query = query.where(R.day >= received_from)
    if received_to is not None:
        query = query.where(R.day <= received_to)
    return list((await session.execute(query)).mappings().all())


def _fact_key(group_by: GroupBy | None, timezone: str) -> Any:
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


async def median_handling_seconds(
    session: AsyncSession,
    *,
    group_by: GroupBy | None,
    received_from: date | None,
    received_to: date | None,
    timezone: str,
) -> dict[str | None, float | None]:
    """Median time from receipt to closure of the closed applications, per group."""
    median = func.percentile_cont(0.5).within_group(extract("epoch", F.closed_at - F.received_at))
    key = _fact_key(group_by, timezone)
    query = select(median.label("median")).where(F.closed_at.is_not(None))
    if key is not None:
        query = select(key.label("key"), median.label("median")).where(F.closed_at.is_not(None))
        query = query.group_by(key)
    local_day = cast(func.timezone(timezone, F.received_at), Date)
    if received_from is not None:
        query = query.where(local_day >= received_from)
    if received_to is not None:
        query = query.where(local_day <= received_to)
    rows = (await session.execute(query)).mappings().all()
    return {
        (None if key is None else str(row["key"])): (
            None if row["median"] is None else float(row["median"])
        )
        for row in rows
    }
