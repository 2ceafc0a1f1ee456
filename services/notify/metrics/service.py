"""The numbers the province reports, above all the closure rate (办结率): applications in a
final state (approved, rejected, withdrawn) / applications received."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.metrics import repository
from services.notify.metrics.schemas import (
    ClosedCounts,
    ClosureReport,
    ClosureStats,
    GroupBy,
    Satisfaction,
)
from shared.errors import InvalidInput

_CENT = Decimal("0.01")


def percentage(part: int, whole: int) -> float | None:
    """part / whole as a percentage with two decimals, rounded half-up: 462500/466200 -> 99.21."""
    if whole == 0:
        return None
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(_CENT, rounding=ROUND_HALF_UP))


def _stats(row: RowMapping, median_seconds: float | None, *, with_day: bool) -> ClosureStats:
    received = int(row["received"])
    approved, rejected, withdrawn = (int(row[k]) for k in ("approved", "rejected", "withdrawn"))
    closed = approved + rejected + withdrawn
    rating_count = int(row["rating_count"])
    key = row.get("key")
    return ClosureStats(
        key=None if key is None else str(key),
        received=received,
        closed=ClosedCounts(
            total=closed, approved=approved, rejected=rejected, withdrawn=withdrawn
        ),
        open=received - closed,
        overdue=int(row["overdue_open"]),
        closure_rate=percentage(closed, received),
        on_time_rate=percentage(int(row["on_time"]), closed),
        median_handling_hours=None if median_seconds is None else round(median_seconds / 3600, 2),
        satisfaction=Satisfaction(
            average=round(int(row["rating_sum"]) / rating_count, 2) if rating_count else None,
            count=rating_count,
        ),
        closed_on_day=int(row["closed_on_day"]) if with_day else None,
    )


async def closure_report(
    session: AsyncSession,
    *,
    group_by: GroupBy | None,
    received_from: date | None,
    received_to: date | None,
    timezone: str,
) -> ClosureReport:
    if received_from and received_to and received_from > received_to:
        raise InvalidInput("开始日期不能晚于结束日期", code="date_range_invalid")
    rows = await repository.counters(
        session, group_by=group_by, received_from=received_from, received_to=received_to
    )
    medians = await repository.median_handling_seconds(
        session,
        group_by=group_by,
        received_from=received_from,
        received_to=received_to,
        timezone=timezone,
    )
    with_day = group_by is GroupBy.DAY
    groups = [
        _stats(
            row, medians.get(None if row.get("key") is None else str(row["key"])), with_day=with_day
        )
        for row in rows
        # Groups with nothing received are left out, except the totals (always one row) and
        # days, which may show only closures of earlier applications.
        if int(row["received"]) or with_day or group_by is None
    ]
    return ClosureReport(group_by=group_by, groups=groups)
