"""The numbers the province reports, above all the closure rate (办结率)."""

from __future__ import annotations

from datetime import UTC, date, datetime
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


def _stats(row: RowMapping) -> ClosureStats:
    received, closed = int(row["received"]), int(row["closed"])
    median = row["median_seconds"]
    average = row["rating_average"]
    key = row.get("key")
    return ClosureStats(
        key=None if key is None else str(key),
        received=received,
        closed=ClosedCounts(
            total=closed,
            approved=int(row["approved"]),
            rejected=int(row["rejected"]),
            withdrawn=int(row["withdrawn"]),
        ),
        open=received - closed,
        overdue=int(row["overdue"]),
        closure_rate=percentage(closed, received),
        on_time_rate=percentage(int(row["on_time"]), closed),
        median_handling_hours=None if median is None else round(float(median) / 3600, 2),
        satisfaction=Satisfaction(
            average=None if average is None else round(float(average), 2),
            count=int(row["rating_count"]),
        ),
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
    rows = await repository.closure_rows(
        session,
        group_by=group_by,
        received_from=received_from,
        received_to=received_to,
        timezone=timezone,
        now=datetime.now(UTC),
    )
    return ClosureReport(group_by=group_by, groups=[_stats(r) for r in rows])
