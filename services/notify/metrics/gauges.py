"""The closure numbers as Prometheus gauges, read from the rollups on each scrape (cheap:
no scan of the facts)."""

from __future__ import annotations

from fastapi import FastAPI

from services.notify.metrics import repository
from services.notify.metrics.schemas import GroupBy
from services.notify.metrics.service import percentage
from shared.metrics import ServiceMetrics

OUTCOMES = ("approved", "rejected", "withdrawn")


async def closure_gauges(app: FastAPI) -> None:
    metrics: ServiceMetrics = app.state.metrics
    rate = metrics.gauge(
        "relief_closure_rate_percent", "办结率 closure rate, percent", ["department"]
    )
    received = metrics.gauge(
        "relief_applications_received_total", "Applications received", ["department"]
    )
    closed = metrics.gauge(
        "relief_applications_closed_total", "Applications closed", ["department", "outcome"]
    )
    still_open = metrics.gauge("relief_applications_open", "Applications open", ["department"])
    overdue = metrics.gauge(
        "relief_applications_overdue", "Open applications past their deadline", ["department"]
    )
    async with app.state.sessionmaker() as session:
        totals = await repository.counters(
            session, group_by=None, received_from=None, received_to=None
        )
        per_department = await repository.counters(
            session, group_by=GroupBy.DEPARTMENT, received_from=None, received_to=None
        )
    for row in [*({**r, "key": "all"} for r in totals), *per_department]:
        department = str(row["key"])
        done = sum(int(row[o]) for o in OUTCOMES)
        received.labels(department).set(int(row["received"]))
        still_open.labels(department).set(int(row["received"]) - done)
        overdue.labels(department).set(int(row["overdue_open"]))
        for outcome in OUTCOMES:
            closed.labels(department, outcome).set(int(row[outcome]))
        value = percentage(done, int(row["received"]))
        rate.labels(department).set(float("nan") if value is None else value)
