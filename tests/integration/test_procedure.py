"""The official procedure in verification: stages from the catalog, field check, public
notice, transfer, the stopped clock, overdue cases, reveal, reassignment and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.verification.cases import repository as cases
from services.verification.cases.deadlines import announce_overdue
from services.verification.cases.repository import Scope
from services.verification.models import Case, StaffUser
from shared.auth import Role
from shared.db import now_utc, unit_of_work
from shared.events import EVENTS_STREAM, route_stream
from tests.factories import APPROVAL, resident_id
from tests.integration.conftest import (
    FIELD_CHECK,
    Pipeline,
    citizen_headers,
    end_public_notice,
    staff_headers,
    stream_entries,
    submit,
    work_to_last_stage,
)


async def _case_for(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    item_code: str,
    department: str,
    clerk_name: str,
    claim: bool = True,
    **overrides: Any,
) -> tuple[str, str, dict[str, str], dict[str, str]]:
    citizen = await citizen_headers(intake, f"openid-{clerk_name}")
    created = await submit(intake, citizen, item_code=item_code, **overrides)
    assert created.status_code == 201, created.text
    await pipeline.drain()
    clerk = await staff_headers(
        verification, sessionmaker, username=clerk_name, department=department
    )
    queue = (await verification.get("/api/v1/cases?status=open", headers=clerk)).json()
    case_id = next(c["id"] for c in queue["items"] if c["application_id"] == created.json()["id"])
    if claim:
        claimed = await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)
        assert claimed.status_code == 200, claimed.text
    return created.json()["id"], case_id, clerk, citizen


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_the_whole_procedure_with_village_review_and_public_notice(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    id_number, phone = resident_id(seq=555), "13611112222"
    app_id, case_id, clerk, citizen = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="subsistence_allowance",
        department="civil",
        clerk_name="civil-full",
        applicant={"name": "李四", "id_number": id_number, "phone": phone},
    )
    url = f"/api/v1/cases/{case_id}"
    _error(
        await verification.post(f"{url}/decide", headers=clerk, json=APPROVAL),
        409,
        "stages_remaining",
    )
    assert (await verification.post(f"{url}/advance", headers=clerk, json={})).is_success
    # field_check: no record, no passing
    _error(
        await verification.post(f"{url}/advance", headers=clerk, json={}),
        409,
        "field_check_missing",
    )
    assert (
        await verification.post(f"{url}/field-check", headers=clerk, json=FIELD_CHECK)
    ).is_success
    entered = await verification.post(f"{url}/advance", headers=clerk, json={"note": "情况属实"})
    assert entered.json()["status"] == "village_review"

    notice = (await verification.get(f"{url}/notice", headers=clerk)).json()
    assert notice["running"] is True
    assert "李四" in notice["text"]
    assert "最低生活保障" in notice["text"]
    assert "北大营村" in notice["text"]
    assert "5天" in notice["text"]
    for secret in (id_number, phone, id_number[-4:], phone[-4:], "6200"):
        assert secret not in notice["text"]
    _error(
        await verification.post(f"{url}/advance", headers=clerk, json={}),
        409,
        "public_notice_running",
    )

    await end_public_notice(sessionmaker, case_id)
    assert (await verification.post(f"{url}/advance", headers=clerk, json={})).json()[
        "status"
    ] == "township_audit"
    assert (await verification.post(f"{url}/advance", headers=clerk, json={})).json()[
        "status"
    ] == "county_decision"
    _error(await verification.post(f"{url}/advance", headers=clerk, json={}), 409, "decision_due")
    decided = await verification.post(f"{url}/decide", headers=clerk, json=APPROVAL)
    assert decided.status_code == 200, decided.text
    assert [s["state"] for s in decided.json()["stages"]] == ["done"] * 5

    history = (await verification.get(f"{url}/history", headers=clerk)).json()
    transitions = [
        (h["from_status"], h["to_status"]) for h in history if h["action"] == "transition"
    ]
    assert transitions == [
        (None, "open"),
        ("open", "claimed"),
        ("claimed", "field_check"),
        ("field_check", "village_review"),
        ("village_review", "township_audit"),
        ("township_audit", "county_decision"),
        ("county_decision", "decided"),
    ]
    assert {h["actor_name"] for h in history if h["action"] == "transition"} >= {"civil-full"}
    assert any(h["action"] == "field_check" for h in history)

    await pipeline.drain()
    timeline = (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).json()
    stage_lines = [e["detail"] for e in timeline["timeline"] if e["kind"] == "case.stage_passed"]
    assert any("实地调查" in line for line in stage_lines)
    assert timeline["status"] == "closed"


async def test_an_item_with_a_field_check_only(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, case_id, clerk, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="employment_assistance",
        department="hrss",
        clerk_name="hrss-field",
    )
    seen = await work_to_last_stage(verification, clerk, case_id)
    assert seen == ["claimed", "field_check"]
    decided = await verification.post(
        f"/api/v1/cases/{case_id}/decide",
        headers=clerk,
        json={
            "outcome": "approved",
            "measures": [{"type": "employment", "description": "推荐到县城就业"}],
        },
    )
    assert decided.status_code == 200, decided.text


async def test_rejection_is_possible_at_any_stage_with_a_reason(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, case_id, clerk, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-reject",
    )
    no_reason = await verification.post(
        f"/api/v1/cases/{case_id}/decide", headers=clerk, json={"outcome": "rejected"}
    )
    assert no_reason.status_code == 422
    rejected = await verification.post(
        f"/api/v1/cases/{case_id}/decide",
        headers=clerk,
        json={"outcome": "rejected", "reason": "已享受同类救助，不重复给予"},
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["outcome"] == "rejected"


async def test_transfer_ends_the_case_here_and_opens_it_there_with_the_same_deadline(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app_id, case_id, civil, citizen = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="temporary_assistance",
        department="civil",
        clerk_name="civil-transfer",
    )
    original = (await verification.get(f"/api/v1/cases/{case_id}", headers=civil)).json()
    same = await verification.post(
        f"/api/v1/cases/{case_id}/transfer",
        headers=civil,
        json={"to_item_code": "subsistence_allowance", "reason": "同一部门"},
    )
    _error(same, 422, "same_department")
    moved = await verification.post(
        f"/api/v1/cases/{case_id}/transfer",
        headers=civil,
        json={"to_item_code": "medical_assistance", "reason": "主要是住院费用，应由医保部门办理"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "transferred"
    await pipeline.drain()

    medins = await staff_headers(verification, sessionmaker, username="medins-receive")
    queue = (await verification.get("/api/v1/cases", headers=medins)).json()["items"]
    arrived = [c for c in queue if c["application_id"] == app_id]
    assert len(arrived) == 1
    assert arrived[0]["item_code"] == "medical_assistance"
    assert arrived[0]["deadline"] == original["deadline"]
    assert arrived[0]["status"] == "open"
    civil_queue = (await verification.get("/api/v1/cases?status=open", headers=civil)).json()
    assert civil_queue["items"] == []

    application = (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).json()
    assert application["department"] == "medins"
    assert any(e["title"] == "已转办" for e in application["timeline"])
    by_dept = (await notify.get("/api/v1/metrics/closure?group_by=department")).json()
    assert [(g["key"], g["received"]) for g in by_dept["groups"]] == [("medins", 1)]


async def test_asking_the_citizen_stops_the_clock(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    app_id, case_id, clerk, citizen = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-clock",
    )
    url = f"/api/v1/cases/{case_id}"
    before = datetime.fromisoformat((await verification.get(url, headers=clerk)).json()["deadline"])
    asked = await verification.post(
        f"{url}/request-info", headers=clerk, json={"message": "请补充出院小结"}
    )
    assert asked.status_code == 200
    _error(
        await verification.post(f"{url}/advance", headers=clerk, json={}),
        409,
        "awaiting_information",
    )
    # Two days pass while the citizen looks for the paper.
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text(
                "UPDATE verification.cases SET info_requested_at = info_requested_at "
                "- interval '2 days' WHERE id = :id"
            ),
            {"id": case_id},
        )
    await pipeline.drain()
    answered = await intake.post(
        f"/api/v1/applications/{app_id}/supplements", headers=citizen, json={"message": "已补充"}
    )
    assert answered.status_code == 200, answered.text
    await pipeline.drain()

    after_case = (await verification.get(url, headers=clerk)).json()
    after = datetime.fromisoformat(after_case["deadline"])
    assert timedelta(days=2) <= after - before < timedelta(days=2, minutes=5)
    assert after_case["paused_seconds"] >= 2 * 24 * 3600
    assert after_case["info_requested_at"] is None
    application = (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).json()
    assert datetime.fromisoformat(application["deadline"]) == after
    assert (await verification.post(f"{url}/advance", headers=clerk, json={})).is_success


async def test_overdue_cases_are_announced_once_and_listed_for_supervisors(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> None:
    _, late_id, _, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-late",
    )
    _, paused_id, clerk2, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-paused",
        applicant={"id_number": resident_id()},
    )
    await verification.post(
        f"/api/v1/cases/{paused_id}/request-info", headers=clerk2, json={"message": "请补充"}
    )
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text("UPDATE verification.cases SET deadline = now() - interval '1 hour'")
        )
    assert await announce_overdue(sessionmaker) == 1  # the paused case's clock is stopped
    assert await announce_overdue(sessionmaker) == 0  # once only
    await pipeline.drain()
    events = [f for _, f in await stream_entries(redis, EVENTS_STREAM)]
    overdue = [f for f in events if '"case.overdue"' in f["envelope"]]
    assert len(overdue) == 1
    assert late_id in overdue[0]["envelope"]

    supervisor = await staff_headers(
        verification, sessionmaker, username="medins-sup", role=Role.SUPERVISOR, region="530100"
    )
    listed = (await verification.get("/api/v1/cases?overdue=true", headers=supervisor)).json()
    assert [c["id"] for c in listed["items"]] == [late_id]
    assert listed["items"][0]["overdue"] is True
    outside = await verification.get("/api/v1/cases?region=532901", headers=supervisor)
    _error(outside, 403, "region_out_of_scope")


async def test_reveal_shows_one_field_to_the_assignee_and_is_audited(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    id_number = resident_id(seq=321)
    _, case_id, clerk, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-reveal",
        applicant={"id_number": id_number, "phone": "13500001111"},
    )
    url = f"/api/v1/cases/{case_id}"
    assert "13500001111" not in (await verification.get(url, headers=clerk)).text
    no_reason = await verification.post(f"{url}/reveal", headers=clerk, json={"field": "phone"})
    assert no_reason.status_code == 422
    shown = await verification.post(
        f"{url}/reveal", headers=clerk, json={"field": "id_number", "reason": "入户核对身份"}
    )
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"field": "id_number", "value": id_number}
    other = await staff_headers(verification, sessionmaker, username="medins-other")
    _error(
        await verification.post(
            f"{url}/reveal", headers=other, json={"field": "phone", "reason": "好奇"}
        ),
        403,
        "not_assignee",
    )
    history = (await verification.get(f"{url}/history", headers=clerk)).json()
    reveals = [h for h in history if h["action"] == "reveal"]
    assert len(reveals) == 1
    assert reveals[0]["actor_name"] == "medins-reveal"
    assert reveals[0]["reason"] == "入户核对身份"
    assert reveals[0]["data"] == {"field": "id_number"}
    assert id_number not in str(history)


async def test_the_audit_log_cannot_be_edited(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-audit",
    )
    for statement in (
        "UPDATE verification.case_audit_log SET reason = 'changed'",
        "DELETE FROM verification.case_audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    async with engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM verification.case_audit_log"))
        ).scalar()
    assert count == 2  # opened, claimed


async def test_release_and_supervisor_reassignment(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, case_id, first, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-first",
    )
    url = f"/api/v1/cases/{case_id}"
    released = await verification.post(f"{url}/release", headers=first)
    assert released.json()["status"] == "open"
    second = await staff_headers(verification, sessionmaker, username="medins-second")
    assert (await verification.post(f"{url}/claim", headers=second)).is_success
    assert (await verification.post(f"{url}/advance", headers=second, json={})).is_success
    _error(await verification.post(f"{url}/release", headers=second), 409, "case_not_releasable")

    _error(
        await verification.post(f"{url}/assign", headers=second, json={"username": "medins-first"}),
        403,
        "supervisor_only",
    )
    supervisor = await staff_headers(
        verification, sessionmaker, username="medins-boss", role=Role.SUPERVISOR, region="530100"
    )
    await staff_headers(verification, sessionmaker, username="medins-dali", region="532901")
    _error(
        await verification.post(
            f"{url}/assign", headers=supervisor, json={"username": "medins-dali"}
        ),
        422,
        "assignee_invalid",
    )
    moved = await verification.post(
        f"{url}/assign", headers=supervisor, json={"username": "medins-first", "reason": "请假"}
    )
    assert moved.status_code == 200, moved.text
    _error(await verification.post(f"{url}/advance", headers=second, json={}), 403, "not_assignee")
    assert (
        await verification.post(f"{url}/field-check", headers=first, json=FIELD_CHECK)
    ).is_success


async def _case_rows(engine: AsyncEngine) -> tuple[int, int, int]:
    """Cases, audit entries and case.opened announcements in the database."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM verification.cases),"
                    " (SELECT count(*) FROM verification.case_audit_log),"
                    " (SELECT count(*) FROM verification.outbox"
                    "  WHERE envelope->>'type' = 'case.opened')"
                )
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_a_redelivered_route_message_opens_no_second_case(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    engine: AsyncEngine,
) -> None:
    citizen = await citizen_headers(intake, "openid-redelivery")
    await submit(intake, citizen)
    await pipeline.drain()
    messages = await stream_entries(redis, route_stream("medins"))
    assert len(messages) == 1
    fields: dict[Any, Any] = messages[0][1]
    for _ in range(3):  # e.g. a relay that died before marking, or a replay
        await redis.xadd(route_stream("medins"), fields)
    await pipeline.drain()
    # One case, one audit entry, one announcement (a redelivery announces the same id again).
    assert await _case_rows(engine) == (1, 1, 1)
    # Even past the inbox (a consumer group made anew), the route event id keeps it at one.
    async with unit_of_work(sessionmaker) as session:
        await session.execute(text("TRUNCATE verification.inbox"))
    await redis.xadd(route_stream("medins"), fields)
    await pipeline.drain()
    # One case, one audit entry, one announcement (a redelivery announces the same id again).
    assert await _case_rows(engine) == (1, 1, 1)


async def test_the_queue_pages_by_deadline_with_a_cursor(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-many")
    for _ in range(5):
        created = await submit(intake, citizen, applicant={"id_number": resident_id()})
        assert created.status_code == 201
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-pager")
    seen: list[str] = []
    deadlines: list[str] = []
    cursor = None
    for _ in range(5):
        query = "/api/v1/cases?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await verification.get(query, headers=clerk)).json()
        seen += [c["id"] for c in page["items"]]
        deadlines += [c["deadline"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    assert deadlines == sorted(deadlines)
    _error(
        await verification.get("/api/v1/cases?cursor=garbage", headers=clerk), 422, "cursor_invalid"
    )


async def test_a_claim_refreshes_the_case_the_session_already_holds(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, case_id, _, _ = await _case_for(
        intake,
        verification,
        pipeline,
        sessionmaker,
        item_code="medical_assistance",
        department="medins",
        clerk_name="medins-held",
        claim=False,
    )
    async with sessionmaker() as session:
        clerk = await session.scalar(select(StaffUser).where(StaffUser.username == "medins-held"))
        assert clerk is not None
        held = await session.get(Case, uuid.UUID(case_id))
        assert held is not None and held.status == "open"
        claimed = await cases.claim(session, Scope.of(clerk), held.id, clerk.id, now_utc())
        assert claimed is held
        assert (held.status, held.assignee_id) == ("claimed", clerk.id)
        # a second clerk's claim of the same case finds nothing to take
        assert await cases.claim(session, Scope.of(clerk), held.id, clerk.id, now_utc()) is None
        await session.rollback()
