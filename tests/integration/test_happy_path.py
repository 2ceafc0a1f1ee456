"""One application from the citizen's phone to the closure rate, over HTTP, through the real
outbox relays and stream consumers."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.auth import Role
from tests.factories import APPROVAL, application_body, resident_id
from tests.integration.conftest import (
    Pipeline,
    citizen_headers,
    staff_headers,
    submit,
    work_to_last_stage,
)


async def test_application_walks_from_citizen_to_closure_rate(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-zhang")
    created = await submit(intake, citizen)
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["status"] == "submitted"
    assert application["department"] == "medins"

    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-530129")
    queue = (await verification.get("/api/v1/cases", headers=clerk)).json()
    assert [c["application_id"] for c in queue["items"]] == [application["id"]]
    case = queue["items"][0]
    assert case["status"] == "open"
    assert case["applicant"]["id_number"].startswith("530***")
    assert "*" in case["applicant"]["phone"]

    case_detail = (await verification.get(f"/api/v1/cases/{case['id']}", headers=clerk)).json()
    assert case_detail["prescreen"]["level"] == "below_line"  # 6200 < the 8050 line
    assert case_detail["form"]["hospital_name"]
    claimed = await verification.post(f"/api/v1/cases/{case['id']}/claim", headers=clerk)
    assert claimed.status_code == 200, claimed.text
    await work_to_last_stage(verification, clerk, case["id"])
    decided = await verification.post(
        f"/api/v1/cases/{case['id']}/decide", headers=clerk, json=APPROVAL
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided"

    await pipeline.drain()
    detail = (await intake.get(f"/api/v1/applications/{application['id']}", headers=citizen)).json()
    assert detail["status"] == "closed"
    assert detail["outcome"] == "approved"
    assert detail["status_label"] == "已办结：审核通过"
    assert [e["kind"] for e in detail["timeline"]] == [
        "submitted",
        "case.opened",
        "case.claimed",
        "case.stage_passed",  # 综合研判 -> 实地调查
        "case.stage_passed",  # 实地调查 -> 乡镇审核
        "case.stage_passed",  # 乡镇审核 -> 县级确定
        "case.decided",
    ]
    assert detail["decision"]["measures"] == APPROVAL["measures"]

    totals = (await notify.get("/api/v1/metrics/closure")).json()
    assert totals["received"] == 1
    assert totals["closed"] == {"total": 1, "approved": 1, "rejected": 0, "withdrawn": 0}
    assert totals["closure_rate"] == 100.0
    assert totals["on_time_rate"] == 100.0
    by_department = (await notify.get("/api/v1/metrics/closure?group_by=department")).json()
    assert [(g["key"], g["received"]) for g in by_department["groups"]] == [("medins", 1)]


async def test_rejection_reaches_the_citizen_with_its_reason(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-li")
    application = (await submit(intake, citizen)).json()
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-a")
    case_id = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]["id"]
    await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)
    reason = "经核实，家庭人均收入高于监测线"
    response = await verification.post(
        f"/api/v1/cases/{case_id}/decide",
        headers=clerk,
        json={"outcome": "rejected", "reason": reason},
    )
    assert response.status_code == 200, response.text
    await pipeline.drain()
    detail = (await intake.get(f"/api/v1/applications/{application['id']}", headers=citizen)).json()
    assert detail["outcome"] == "rejected"
    assert reason in detail["timeline"][-1]["detail"]


async def test_idempotency_key_replays_the_first_answer(intake: httpx.AsyncClient) -> None:
    citizen = await citizen_headers(intake, "openid-wang")
    body = application_body()
    headers = {**citizen, "Idempotency-Key": "retry-on-weak-network-1"}
    first, second = await asyncio.gather(
        intake.post("/api/v1/applications", json=body, headers=headers),
        intake.post("/api/v1/applications", json=body, headers=headers),
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    mine = (await intake.get("/api/v1/applications", headers=citizen)).json()
    assert len(mine["items"]) == 1

    changed = application_body(description="另一份申请")
    reused = await intake.post("/api/v1/applications", json=changed, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


async def test_second_open_application_for_same_person_and_item_is_refused(
    intake: httpx.AsyncClient,
) -> None:
    citizen = await citizen_headers(intake, "openid-zhao")
    id_number = resident_id()
    first = await submit(intake, citizen, applicant={"id_number": id_number})
    again = await submit(intake, citizen, applicant={"id_number": id_number})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "duplicate_application"
    assert error["details"]["application_id"] == first.json()["id"]
    other_item = await submit(
        intake, citizen, item_code="temporary_assistance", applicant={"id_number": id_number}
    )
    assert other_item.status_code == 201


async def test_a_citizen_sees_only_his_own_applications(intake: httpx.AsyncClient) -> None:
    owner = await citizen_headers(intake, "openid-a")
    stranger = await citizen_headers(intake, "openid-b")
    application = (await submit(intake, owner)).json()

    response = await intake.get(f"/api/v1/applications/{application['id']}", headers=stranger)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert (await intake.get("/api/v1/applications", headers=stranger)).json()["items"] == []
    anonymous = await intake.get(f"/api/v1/applications/{application['id']}")
    assert anonymous.status_code == 401


async def test_clerks_see_only_their_department_and_county(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-c")
    await submit(intake, citizen)  # medical_assistance -> medins, county 530129
    await pipeline.drain()

    own = await staff_headers(verification, sessionmaker, username="medins-own")
    other_dept = await staff_headers(
        verification, sessionmaker, username="civil-own", department="civil"
    )
    other_county = await staff_headers(
        verification, sessionmaker, username="medins-dali", region="532901"
    )
    supervisor = await staff_headers(
        verification,
        sessionmaker,
        username="medins-kunming",
        role=Role.SUPERVISOR,
        region="530100",
    )
    counts = {}
    for name, headers in {
        "own": own,
        "other_dept": other_dept,
        "other_county": other_county,
        "supervisor": supervisor,
    }.items():
        counts[name] = len(
            (await verification.get("/api/v1/cases", headers=headers)).json()["items"]
        )
    assert counts == {"own": 1, "other_dept": 0, "other_county": 0, "supervisor": 1}

    case_id = (await verification.get("/api/v1/cases", headers=own)).json()["items"][0]["id"]
    hidden = await verification.get(f"/api/v1/cases/{case_id}", headers=other_county)
    assert hidden.status_code == 404

    citizen_on_staff_api = await verification.get("/api/v1/cases", headers=citizen)
    assert citizen_on_staff_api.status_code == 401


async def test_two_clerks_racing_for_one_case_exactly_one_wins(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-d")
    await submit(intake, citizen)
    await pipeline.drain()
    first = await staff_headers(verification, sessionmaker, username="clerk-1")
    second = await staff_headers(verification, sessionmaker, username="clerk-2")
    case_id = (await verification.get("/api/v1/cases", headers=first)).json()["items"][0]["id"]

    responses = await asyncio.gather(
        verification.post(f"/api/v1/cases/{case_id}/claim", headers=first),
        verification.post(f"/api/v1/cases/{case_id}/claim", headers=second),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["error"]["code"] == "case_not_open"
