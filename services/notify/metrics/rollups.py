"""The closure-rate counters, kept incrementally: every change to an application's fact
takes back what its old state added to the rollups and adds what its new state adds. The
same definitions, written as SQL, rebuild the rollups from the facts (`relief metrics
rebuild`), and a test holds the two to the same numbers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact, ClosureRollup
from shared.db import deferred, table_of, unnest_insert

COUNTERS = (
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
RollupKey = tuple[str, str, date, str]  # dimension, key, day, department


@dataclass(frozen=True)
class FactState:
    """The parts of a fact that the counters depend on."""

    department: str
    item_code: str
    region_code: str
    received_at: datetime
    deadline: datetime
    closed_at: datetime | None
    outcome: str | None
    rating: int | None
    overdue: bool

    @classmethod
    def of(cls, fact: ApplicationFact | None) -> FactState | None:
        if fact is None:
            return None
        return cls(
            department=fact.department,
            item_code=fact.item_code,
            region_code=fact.region_code,
            received_at=fact.received_at,
            deadline=fact.deadline,
            closed_at=fact.closed_at,
            outcome=fact.outcome,
            rating=fact.rating,
            overdue=fact.overdue,
        )


def contributions(state: FactState | None, zone: ZoneInfo) -> dict[RollupKey, dict[str, int]]:
    if state is None:
        return {}
    received_day = state.received_at.astimezone(zone).date()
    cohort: dict[str, int] = {"received": 1}
    if state.closed_at is not None and state.outcome in ("approved", "rejected", "withdrawn"):
        cohort[state.outcome] = 1
        if state.closed_at <= state.deadline:
            cohort["on_time"] = 1
    elif state.overdue:
        cohort["overdue_open"] = 1
    if state.rating is not None:
        cohort["rating_sum"] = state.rating
        cohort["rating_count"] = 1
    found: dict[RollupKey, dict[str, int]] = defaultdict(dict)
    keys = (
        ("item", state.item_code, state.department),
        ("region", state.region_code, ""),
    )
    for dimension, key, department in keys:
        found[(dimension, key, received_day, department)].update(cohort)
    if state.closed_at is not None:
        closed_day = state.closed_at.astimezone(zone).date()
        for dimension, key, department in keys:
            counters = found[(dimension, key, closed_day, department)]
            counters["closed_on_day"] = counters.get("closed_on_day", 0) + 1
    return found


def apply_change(
    session: AsyncSession, before: FactState | None, after: FactState | None, zone: ZoneInfo
) -> None:
    """Move the rollups from what `before` counted to what `after` counts: gathered in the
    transaction and written when it commits (see `_Deltas`)."""
    deltas = deferred(session, _Deltas).by_key
    for key, counters in contributions(before, zone).items():
        row = deltas[key]
        for name, value in counters.items():
            row[name] -= value
    for key, counters in contributions(after, zone).items():
        row = deltas[key]
        for name, value in counters.items():
            row[name] += value


def _zeros() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass
class _Deltas:
    """A transaction's changes to the rollups, summed per row. A consumer batch moves the
    same few rows (an item's and a county's day) again and again: one upsert at commit
    writes each row once, where one per event wrote them over and over. In key order, so
    two transactions that share rows lock them in the same order."""

    by_key: defaultdict[RollupKey, dict[str, int]] = field(
        default_factory=lambda: defaultdict(_zeros)
    )

    def write(self, connection: Connection) -> None:
        changed = [(k, d) for k, d in sorted(self.by_key.items()) if any(d.values())]
        if not changed:
            return
        columns: dict[str, list[Any]] = {
            name: [key[i] for key, _ in changed] for i, name in enumerate(_KEY_COLUMNS)
        }
        for name in COUNTERS:
            columns[name] = [delta[name] for _, delta in changed]
        connection.execute(_ADD_TO_ROLLUPS, columns)


_KEY_COLUMNS = ("dimension", "key", "day", "department")
_ROLLUPS = table_of(ClosureRollup)

# Built once: the rows as column arrays, one statement for any number of them.
_ADD_TO_ROLLUPS = text(
    f"""
    {unnest_insert(_ROLLUPS, (*_KEY_COLUMNS, *COUNTERS))}
    ON CONFLICT (dimension, key, day) DO UPDATE SET
    {", ".join(f"{c} = {_ROLLUPS.name}.{c} + excluded.{c}" for c in COUNTERS)}
    """
)


REBUILD_SQL = """
WITH facts AS (
    SELECT *,
           (received_at AT TIME ZONE :zone)::date AS received_day,
           (closed_at AT TIME ZONE :zone)::date AS closed_day,
           closed_at IS NOT NULL AND outcome IN ('approved', 'rejected', 'withdrawn') AS closed
    FROM notify.application_facts
),
keyed AS (
    SELECT 'item' AS dimension, item_code AS key, department AS dept, received_day,
           closed_day, closed, outcome, closed_at, deadline, overdue, rating
    FROM facts
    UNION ALL
    SELECT 'region', region_code, '', received_day, closed_day, closed, outcome, closed_at,
           deadline, overdue, rating
    FROM facts
),
parts AS (
    SELECT dimension, key, received_day AS day, dept,
           count(*) AS received,
           count(*) FILTER (WHERE closed AND outcome = 'approved') AS approved,
           count(*) FILTER (WHERE closed AND outcome = 'rejected') AS rejected,
           count(*) FILTER (WHERE closed AND outcome = 'withdrawn') AS withdrawn,
           count(*) FILTER (WHERE closed AND closed_at <= deadline) AS on_time,
           count(*) FILTER (WHERE NOT closed AND overdue) AS overdue_open,
           coalesce(sum(rating), 0) AS rating_sum,
           count(rating) AS rating_count,
           0 AS closed_on_day
    FROM keyed GROUP BY dimension, key, received_day, dept
    UNION ALL
    SELECT dimension, key, closed_day, dept, 0, 0, 0, 0, 0, 0, 0, 0, count(*)
    FROM keyed WHERE closed_at IS NOT NULL
    GROUP BY dimension, key, closed_day, dept
)
INSERT INTO notify.closure_rollups
    (dimension, key, day, department, received, approved, rejected, withdrawn, on_time,
     overdue_open, rating_sum, rating_count, closed_on_day)
SELECT dimension, key, day, dept, sum(received), sum(approved), sum(rejected),
       sum(withdrawn), sum(on_time), sum(overdue_open), sum(rating_sum), sum(rating_count),
       sum(closed_on_day)
FROM parts GROUP BY dimension, key, day, dept
"""


async def rebuild(session: AsyncSession, zone: ZoneInfo) -> int:
    """Recompute every rollup from the facts; returns the number of rollup rows."""
    await session.execute(text("LOCK TABLE notify.closure_rollups IN EXCLUSIVE MODE"))
    await session.execute(text("DELETE FROM notify.closure_rollups"))
    result = await session.execute(text(REBUILD_SQL), {"zone": zone.key})
    return int(getattr(result, "rowcount", 0) or 0)
