"""Deadline chasing (催办/督办) once each, and the closure numbers: the incremental counters
equal a recount from intake's own records and a rebuild from scratch; 99.21% exactly."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.metrics.rollups import rebuild
from services.notify.reminders.service import remind_due_soon
from services.verification.cases.deadlines import announce_overdue
from shared.auth import Role
from shared.db import unit_of_work
from tests.factories import APPROVAL, resident_id
from tests.integration.conftest import (
    Pipeline,
    citizen_headers,
    staff_headers,
    stream_entries,
    submit,
    work_to_last_stage,
)

ZONE = ZoneInfo("Asia/Shanghai")


async def test_clerk_is_reminded_once_and_supervisors_get_one_escalation(
    redis: Redis,
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-chase")
    await submit(intake, citizen)
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-chase")
    case_id = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]["id"]
    await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)
    await pipeline.drain()

    before = timedelta(hours=72)
    assert await remind_due_soon(sessionmaker, before=before, zone=ZONE) == 0  # 15 days left
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text("UPDATE notify.application_facts SET deadline = now() + interval '1 day'")
        )
    assert await remind_due_soon(sessionmaker, before=before, zone=ZONE) == 1
    assert await remind_due_soon(sessionmaker, before=before, zone=ZONE) == 0
    mine = (await notify.get("/api/v1/reminders", headers=clerk)).json()
    assert [r["kind"] for r in mine] == ["due_soon"]
    assert "催办" in mine[0]["text"]
    other = await staff_headers(verification, sessionmaker, username="medins-chase-2")
    assert (await notify.get("/api/v1/reminders", headers=other)).json() == []

    # The deadline passes: verification announces it, notify escalates, once.
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text("UPDATE verification.cases SET deadline = now() - interval '1 hour'")
        )
    assert await announce_overdue(sessionmaker) == 1
    await pipeline.drain()
    events = await stream_entries(redis, "relief:events")
    overdue_event: dict[Any, Any] = next(f for _, f in events if '"case.overdue"' in f["envelope"])
    await redis.xadd("relief:events", overdue_event)  # delivered twice: still one escalation
    await pipeline.drain()
    supervisor = await staff_headers(
        verification,
        sessionmaker,
        username="medins-boss-chase",
        role=Role.SUPERVISOR,
        region="530100",
    )
    escalations = (await notify.get("/api/v1/reminders?kind=overdue", headers=supervisor)).json()
    assert len(escalations) == 1
    assert "督办" in escalations[0]["text"]
    civil_supervisor = await staff_headers(
        verification,
        sessionmaker,
        username="civil-boss",
        role=Role.SUPERVISOR,
        department="civil",
        region="530100",
    )
    assert (await notify.get("/api/v1/reminders", headers=civil_supervisor)).json() == []
    totals = (await notify.get("/api/v1/metrics/closure")).json()
    assert totals["overdue"] == 1


async def _mixed_history(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Applications in every state: approved, rejected, withdrawn, transferred, open,
    overdue, rated, across items and counties."""
    clerks = {
        ("medins", "530129"): await staff_headers(verification, sessionmaker, username="m-1"),
        ("medins", "532901"): await staff_headers(
            verification, sessionmaker, username="m-2", region="532901"
        ),
        ("civil", "530129"): await staff_headers(
            verification, sessionmaker, username="c-1", department="civil"
        ),
    }
    plan = [
        ("medical_assistance", "530129", "approve"),
        ("medical_assistance", "530129", "reject"),
        ("medical_assistance", "532901", "approve"),
        ("medical_assistance", "532901", "open"),
        ("temporary_assistance", "530129", "withdraw"),
        ("temporary_assistance", "530129", "transfer"),
        ("temporary_assistance", "530129", "overdue"),
        ("medical_assistance", "530129", "reject"),
        ("temporary_assistance", "530129", "open"),
    ]
    citizen = await citizen_headers(intake, "openid-mixed")
    for n, (item, region, fate) in enumerate(plan):
        created = await submit(
            intake,
            citizen,
            item_code=item,
            household={"region_code": region},
            applicant={"id_number": resident_id(seq=900 + n)},
        )
        assert created.status_code == 201, created.text
        app_id = created.json()["id"]
        await pipeline.drain()
        department = "medins" if item == "medical_assistance" else "civil"
        clerk = clerks[(department, region)]
        queue = (await verification.get("/api/v1/cases?status=open", headers=clerk)).json()
        case_id = next(c["id"] for c in queue["items"] if c["application_id"] == app_id)
        url = f"/api/v1/cases/{case_id}"
        if fate in ("approve", "reject", "transfer"):
            await verification.post(f"{url}/claim", headers=clerk)
        if fate == "approve":
            await work_to_last_stage(verification, clerk, case_id)
            assert (
                await verification.post(f"{url}/decide", headers=clerk, json=APPROVAL)
            ).is_success
        elif fate == "reject":
            await verification.post(
                f"{url}/decide", headers=clerk, json={"outcome": "rejected", "reason": "不符合条件"}
            )
        elif fate == "withdraw":
            await intake.post(f"/api/v1/applications/{app_id}/withdraw", headers=citizen, json={})
        elif fate == "transfer":
            await verification.post(
                f"{url}/transfer",
                headers=clerk,
                json={"to_item_code": "medical_assistance", "reason": "应由医保办理"},
            )
        elif fate == "overdue":
            async with unit_of_work(sessionmaker) as session:
                await session.execute(
                    text(
                        "UPDATE verification.cases SET deadline = now() - interval '1 minute' "
                        "WHERE id = :id"
                    ),
                    {"id": case_id},
                )
            await announce_overdue(sessionmaker)
        await pipeline.drain()
    # Ratings on two closed applications.
    closed = [
        a["id"]
        for a in (await intake.get("/api/v1/applications?limit=50", headers=citizen)).json()[
            "items"
        ]
        if a["status"] == "closed" and a["outcome"] != "withdrawn"
    ]
    for app_id, score in zip(closed[:2], (5, 2), strict=True):
        rated = await intake.post(
            f"/api/v1/applications/{app_id}/rating", headers=citizen, json={"score": score}
        )
        assert rated.status_code == 200, rated.text
    await pipeline.drain()


async def _recount(engine: AsyncEngine) -> dict[str, Any]:
    """The numbers straight from intake's applications table (the system of record)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    SELECT count(*) AS received,
                           count(*) FILTER (WHERE status = 'closed') AS closed,
                           count(*) FILTER (WHERE outcome = 'approved') AS approved,
                           count(*) FILTER (WHERE outcome = 'rejected') AS rejected,
                           count(*) FILTER (WHERE outcome = 'withdrawn') AS withdrawn,
                           avg(rating) AS rating_average,
                           count(rating) AS rating_count
                    FROM intake.applications
                    """
                )
            )
        ).one()
        by_department: dict[str, int] = dict(
            (
                await conn.execute(
                    text("SELECT department, count(*) FROM intake.applications GROUP BY 1")
                )
            ).all()
        )
    return {**row._asdict(), "by_department": by_department}


async def _api_numbers(notify: httpx.AsyncClient) -> dict[str, Any]:
    return {
        "totals": (await notify.get("/api/v1/metrics/closure")).json(),
        **{
            group: (await notify.get(f"/api/v1/metrics/closure?group_by={group}")).json()
            for group in ("department", "item", "region", "day")
        },
    }


async def test_incremental_numbers_equal_a_recount_and_a_rebuild(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _mixed_history(intake, verification, pipeline, sessionmaker)
    recount = await _recount(engine)
    incremental = await _api_numbers(notify)
    totals = incremental["totals"]
    assert totals["received"] == recount["received"] == 9
    assert totals["closed"] == {
        "total": recount["closed"],
        "approved": recount["approved"],
        "rejected": recount["rejected"],
        "withdrawn": recount["withdrawn"],
    }
    assert totals["open"] == recount["received"] - recount["closed"]
    assert totals["overdue"] == 1
    assert totals["satisfaction"] == {
        "average": round(float(recount["rating_average"]), 2),
        "count": recount["rating_count"],
    }
    expected_rate = float(
        (Decimal(recount["closed"]) * 100 / recount["received"]).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
    )
    assert totals["closure_rate"] == expected_rate
    assert {g["key"]: g["received"] for g in incremental["department"]["groups"]} == recount[
        "by_department"
    ]

    async with unit_of_work(sessionmaker) as session:
        await rebuild(session, ZONE)
    assert await _api_numbers(notify) == incremental


async def test_the_platforms_history_reads_99_21_percent(
    notify: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """466,200 applications received, 462,500 closed: 99.21% (two decimals, half-up)."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text(
                """
                INSERT INTO notify.application_facts
                    (application_id, department, item_code, region_code, received_at, deadline,
                     closed_at, outcome)
                SELECT gen_random_uuid(), 'civil', 'subsistence_allowance', '530129',
                       timestamptz '2021-07-01 08:00+08' + (g % 660) * interval '1 day',
                       timestamptz '2021-07-16 08:00+08' + (g % 660) * interval '1 day',
                       CASE WHEN g <= 462500
                            THEN timestamptz '2021-07-05 08:00+08' + (g % 660) * interval '1 day'
                       END,
                       CASE WHEN g <= 462500 THEN
                           CASE WHEN g % 10 = 0 THEN 'rejected' ELSE 'approved' END
                       END
                FROM generate_series(1, 466200) AS g
                """
            )
        )
        await rebuild(session, ZONE)
    totals = (await notify.get("/api/v1/metrics/closure")).json()
    assert totals["received"] == 466_200
    assert totals["closed"]["total"] == 462_500
    assert totals["open"] == 3_700
    assert totals["closure_rate"] == 99.21
    assert totals["on_time_rate"] == 100.0
    assert totals["median_handling_hours"] == 96.0


async def test_closure_numbers_are_exported_to_prometheus(
    intake: httpx.AsyncClient, notify: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    citizen = await citizen_headers(intake, "openid-gauges")
    await submit(intake, citizen)
    await pipeline.drain()
    exposition = (await notify.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert samples[("relief_applications_received_total", (("department", "all"),))] == 1
    assert samples[("relief_applications_received_total", (("department", "medins"),))] == 1
    assert samples[("relief_applications_open", (("department", "medins"),))] == 1
    assert samples[("relief_closure_rate_percent", (("department", "all"),))] == 0.0
