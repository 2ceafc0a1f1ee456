"""What a citizen and a grid worker do around an application: answer a request for
information, withdraw, rate, report for someone else, attach evidence."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake.applications import repository
from services.intake.auth.service import deactivate_grid_worker, register_grid_worker
from shared.db import unit_of_work
from tests.factories import APPROVAL, JPEG, PDF, application_body, resident_id
from tests.integration.conftest import (
    Pipeline,
    citizen_headers,
    intake_with,
    staff_headers,
    statements_run,
    submit,
    work_to_last_stage,
)


async def _open_case(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    citizen: dict[str, str],
    clerk_name: str = "medins-clerk",
) -> tuple[str, str, dict[str, str]]:
    application = (await submit(intake, citizen)).json()
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username=clerk_name)
    queue = await verification.get("/api/v1/cases?status=open", headers=clerk)
    case_id = queue.json()["items"][0]["id"]
    assert (await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)).is_success
    await pipeline.drain()
    return application["id"], case_id, clerk


async def test_request_info_and_supplement(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-supplement")
    app_id, case_id, clerk = await _open_case(intake, verification, pipeline, sessionmaker, citizen)
    too_early = await intake.post(
        f"/api/v1/applications/{app_id}/supplements", headers=citizen, json={"message": "x"}
    )
    assert too_early.status_code == 409
    assert too_early.json()["error"]["code"] == "no_info_requested"

    asked = await verification.post(
        f"/api/v1/cases/{case_id}/request-info",
        headers=clerk,
        json={"message": "请上传住院发票和出院小结"},
    )
    assert asked.status_code == 200, asked.text
    await pipeline.drain()
    detail = (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).json()
    assert detail["status"] == "needs_info"
    assert detail["status_label"] == "需要补充材料"
    assert detail["info_request"] == "请上传住院发票和出院小结"

    uploaded = await intake.post(
        f"/api/v1/applications/{app_id}/attachments",
        headers=citizen,
        files={"file": ("发票.pdf", PDF, "application/pdf")},
    )
    assert uploaded.status_code == 201, uploaded.text
    answered = await intake.post(
        f"/api/v1/applications/{app_id}/supplements",
        headers=citizen,
        json={"message": "已上传发票", "attachment_ids": [uploaded.json()["id"]]},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "in_review"
    assert answered.json()["info_request"] is None
    await pipeline.drain()
    case = (await verification.get(f"/api/v1/cases/{case_id}", headers=clerk)).json()
    assert case["info_request"] is None
    assert [a["filename"] for a in case["attachments"]] == ["发票.pdf"]


async def test_withdraw_before_decision_only(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-withdraw")
    app_id, case_id, clerk = await _open_case(intake, verification, pipeline, sessionmaker, citizen)
    withdrawn = await intake.post(
        f"/api/v1/applications/{app_id}/withdraw", headers=citizen, json={"reason": "已自行解决"}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status_label"] == "已撤回"
    await pipeline.drain()
    case = (await verification.get(f"/api/v1/cases/{case_id}", headers=clerk)).json()
    assert (case["status"], case["outcome"]) == ("decided", "withdrawn")
    totals = (await notify.get("/api/v1/metrics/closure")).json()
    assert totals["closed"]["withdrawn"] == 1
    assert totals["closure_rate"] == 100.0

    # A second application, decided: withdrawing it is refused.
    other = await citizen_headers(intake, "openid-withdraw-2")
    app_id, case_id, clerk = await _open_case(
        intake, verification, pipeline, sessionmaker, other, clerk_name="medins-2"
    )
    await work_to_last_stage(verification, clerk, case_id)
    await verification.post(f"/api/v1/cases/{case_id}/decide", headers=clerk, json=APPROVAL)
    await pipeline.drain()
    refused = await intake.post(f"/api/v1/applications/{app_id}/withdraw", headers=other, json={})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "application_closed"


async def test_rating_once_after_closure(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-rating")
    app_id, case_id, clerk = await _open_case(intake, verification, pipeline, sessionmaker, citizen)
    early = await intake.post(
        f"/api/v1/applications/{app_id}/rating", headers=citizen, json={"score": 5}
    )
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "not_closed"
    await work_to_last_stage(verification, clerk, case_id)
    await verification.post(f"/api/v1/cases/{case_id}/decide", headers=clerk, json=APPROVAL)
    await pipeline.drain()

    rated = await intake.post(
        f"/api/v1/applications/{app_id}/rating",
        headers=citizen,
        json={"score": 4, "comment": "办得快"},
    )
    assert rated.status_code == 200, rated.text
    assert rated.json()["rating"] == 4
    again = await intake.post(
        f"/api/v1/applications/{app_id}/rating", headers=citizen, json={"score": 1}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_rated"
    out_of_range = await intake.post(
        f"/api/v1/applications/{app_id}/rating", headers=citizen, json={"score": 6}
    )
    assert out_of_range.status_code == 422
    await pipeline.drain()
    satisfaction = (await notify.get("/api/v1/metrics/closure")).json()["satisfaction"]
    assert satisfaction == {"average": 4.0, "count": 1}


_SUBMISSION_TABLES = (
    "applications",
    "idempotency_records",
    "citizen_bindings",
    "timeline_entries",
    "outbox",
)


async def _row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table: int(
                (
                    await connection.execute(text(f"SELECT count(*) FROM intake.{table}"))
                ).scalar_one()
            )
            for table in _SUBMISSION_TABLES
        }


async def test_a_submission_is_one_statement_and_a_refused_one_leaves_nothing(
    intake: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    citizen = await citizen_headers(intake, "openid-one-statement")
    body = application_body()
    with statements_run() as statements:
        created = await intake.post(
            "/api/v1/applications", json=body, headers={**citizen, "Idempotency-Key": "first-key-1"}
        )
    assert created.status_code == 201, created.text
    assert len([sql for sql in statements if "INSERT" in sql]) == 1
    written = await _row_counts(engine)
    assert written == {
        "applications": 1,
        "idempotency_records": 1,
        "citizen_bindings": 1,
        "timeline_entries": 1,
        "outbox": 2,  # the route message and the event
    }

    # The same person and item again, under a new key: refused, and the key is not kept
    # with an answer for an application that was never written.
    for _ in range(2):
        again = await intake.post(
            "/api/v1/applications",
            json=body,
            headers={**citizen, "Idempotency-Key": "second-key-1"},
        )
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "duplicate_application"
        assert again.json()["error"]["details"]["application_id"] == created.json()["id"]
    assert await _row_counts(engine) == written


async def test_a_submission_needs_no_transaction_and_a_racing_duplicate_leaves_no_key(
    intake: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    citizen = await citizen_headers(intake, "openid-autocommit")
    body = application_body()
    with statements_run(transaction_control=True) as statements:
        # The same person and item under two keys at once: one application, one key.
        answers = await asyncio.gather(
            *(
                intake.post(
                    "/api/v1/applications",
                    json=body,
                    headers={**citizen, "Idempotency-Key": f"racing-key-{n}"},
                )
                for n in range(2)
            )
        )
    assert sorted(a.status_code for a in answers) == [201, 409]
    # No BEGIN and no COMMIT around the statement: it commits on its own.
    inserts = [sql for sql in statements if "INSERT INTO intake.idempotency_records" in sql]
    assert len(inserts) >= 2  # the refused one is run again to raise SQLAlchemy's error
    assert not [sql for sql in statements if sql.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    counts = await _row_counts(engine)
    assert (counts["applications"], counts["idempotency_records"]) == (1, 1)


async def test_the_submission_statement_refuses_a_column_it_would_drop(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(ValueError, match="nickname"):
            await repository.insert_submission(
                await session.connection(),
                idempotency={},
                application={"nickname": "老王"},
                bind_citizen=False,
                timeline={},
                outbox={},
            )


async def test_grid_worker_reports_for_a_citizen_who_then_sees_it(
    intake: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await register_grid_worker(session, openid="grid-li", name="李网格", region_code="530129")
    login = (await intake.post("/api/v1/auth/wechat", json={"code": "dev:grid-li"})).json()
    assert login["role"] == "grid_worker"
    worker = {"Authorization": f"Bearer {login['access_token']}"}
    id_number = resident_id()
    body = application_body(
        applicant={"name": "王老五", "id_number": id_number, "phone": "13987654321"}
    )
    with statements_run() as statements:
        created = await intake.post(
            "/api/v1/applications", json=body, headers={**worker, "Idempotency-Key": "grid-entry-1"}
        )
    assert created.status_code == 201, created.text
    # Checked active once, and his name for the timeline taken from that same row.
    assert len([sql for sql in statements if "FROM intake.grid_workers" in sql]) == 1
    # Entered for someone else: the grid worker is not bound to that person.
    assert (await _row_counts(engine))["citizen_bindings"] == 0
    app_id = created.json()["id"]
    outside = application_body(household={"region_code": "532901"})
    refused = await intake.post(
        "/api/v1/applications", json=outside, headers={**worker, "Idempotency-Key": "grid-entry-2"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "region_out_of_scope"
    assert len((await intake.get("/api/v1/applications", headers=worker)).json()["items"]) == 1

    citizen = await citizen_headers(intake, "openid-wang-laowu")
    assert (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).status_code == 404
    wrong_phone = await intake.post(
        "/api/v1/me/bindings",
        headers=citizen,
        json={"name": "王老五", "id_number": id_number, "phone": "13900000000"},
    )
    assert wrong_phone.json()["applications"] == 0
    bound = await intake.post(
        "/api/v1/me/bindings",
        headers=citizen,
        json={"name": "王老五", "id_number": id_number, "phone": "13987654321"},
    )
    assert bound.status_code == 200, bound.text
    assert bound.json()["applications"] == 1
    detail = (await intake.get(f"/api/v1/applications/{app_id}", headers=citizen)).json()
    assert detail["submitted_by_role"] == "grid_worker"
    assert detail["timeline"][0]["title"] == "网格员代为提交"
    assert "李网格" in detail["timeline"][0]["detail"]
    rating_by_worker = await intake.post(
        f"/api/v1/applications/{app_id}/rating", headers=worker, json={"score": 5}
    )
    assert rating_by_worker.status_code == 403

    # Deactivated: his token stops working at once.
    async with unit_of_work(sessionmaker) as session:
        await deactivate_grid_worker(session, openid="grid-li")
    refused = await intake.get("/api/v1/applications", headers=worker)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "account_disabled"


async def test_attachments_are_checked_by_content_and_shown_only_to_those_allowed(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-attach")
    app_id = (await submit(intake, citizen)).json()["id"]
    photo = await intake.post(
        f"/api/v1/applications/{app_id}/attachments",
        headers=citizen,
        files={"file": ("house.jpg", JPEG, "image/jpeg")},
    )
    assert photo.status_code == 201, photo.text
    assert photo.json()["content_type"] == "image/jpeg"
    disguised = await intake.post(
        f"/api/v1/applications/{app_id}/attachments",
        headers=citizen,
        files={"file": ("bill.jpg", b"#!/bin/sh\nrm -rf /\n", "image/jpeg")},
    )
    assert disguised.status_code == 415
    assert disguised.json()["error"]["code"] == "attachment_type_invalid"

    url = f"/api/v1/applications/{app_id}/attachments/{photo.json()['id']}"
    own = await intake.get(url, headers=citizen)
    assert own.status_code == 200
    assert own.content == JPEG
    assert own.headers["content-type"] == "image/jpeg"
    assert own.headers["x-content-type-options"] == "nosniff"
    stranger = await citizen_headers(intake, "openid-stranger")
    assert (await intake.get(url, headers=stranger)).status_code == 404

    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-attach")
    case = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]
    detail = (await verification.get(f"/api/v1/cases/{case['id']}", headers=clerk)).json()
    attachment_id = detail["attachments"][0]["id"]
    seen = await verification.get(
        f"/api/v1/cases/{case['id']}/attachments/{attachment_id}", headers=clerk
    )
    assert seen.status_code == 200
    assert seen.content == JPEG
    other_dept = await staff_headers(
        verification, sessionmaker, username="civil-attach", department="civil"
    )
    hidden = await verification.get(
        f"/api/v1/cases/{case['id']}/attachments/{attachment_id}", headers=other_dept
    )
    assert hidden.status_code == 404


async def test_oversized_uploads_are_refused(infra: object) -> None:
    async with intake_with(attachment_max_bytes=2048, max_request_bytes=8192) as intake:
        citizen = await citizen_headers(intake, "openid-big")
        app_id = (await submit(intake, citizen)).json()["id"]
        big_photo = JPEG + b"\x00" * 3000
        too_big = await intake.post(
            f"/api/v1/applications/{app_id}/attachments",
            headers=citizen,
            files={"file": ("big.jpg", big_photo, "image/jpeg")},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "attachment_too_large"
        huge = await intake.post(
            f"/api/v1/applications/{app_id}/attachments",
            headers=citizen,
            files={"file": ("huge.jpg", JPEG + b"\x00" * 20000, "image/jpeg")},
        )
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "payload_too_large"


async def test_submissions_are_rate_limited_per_citizen(infra: object) -> None:
    async with intake_with(rate_submit_per_user="2/hour") as intake:
        citizen = await citizen_headers(intake, "openid-eager")
        statuses = [(await submit(intake, citizen)).status_code for _ in range(3)]
        assert statuses == [201, 201, 429]


async def test_submissions_are_rate_limited_per_address_from_the_proxy_header_if_trusted(
    infra: object,
) -> None:
    async def statuses(intake: httpx.AsyncClient, addresses: list[str]) -> list[int]:
        result = []
        for n, address in enumerate(addresses):
            citizen = await citizen_headers(intake, f"openid-at-{address}-{n}")
            forwarded = {**citizen, "X-Forwarded-For": f"{address}, 10.0.0.254"}
            result.append((await submit(intake, forwarded)).status_code)
        return result

    behind_proxy = {"rate_submit_per_ip": "2/hour", "trust_forwarded_for": True}
    async with intake_with(**behind_proxy) as intake:
        addresses = ["203.0.113.5", "203.0.113.5", "203.0.113.5", "203.0.113.6"]
        assert await statuses(intake, addresses) == [201, 201, 429, 201]
    async with intake_with(rate_submit_per_ip="2/hour") as intake:
        # Not trusted: the header is the caller's word; all come from the test client.
        addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        assert await statuses(intake, addresses) == [201, 201, 429]


async def test_no_plaintext_id_number_or_phone_in_any_table(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    id_number, phone = resident_id(seq=731), "13712345678"
    citizen = await citizen_headers(intake, "openid-pii")
    response = await submit(
        intake, citizen, applicant={"name": "赵六", "id_number": id_number, "phone": phone}
    )
    assert response.status_code == 201
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-pii")
    listed = (await verification.get("/api/v1/cases", headers=clerk)).text
    assert id_number not in listed
    assert phone not in listed

    dump: list[str] = []
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname IN ('intake', 'verification', 'notify')"
                )
            )
        ).scalars()
        for table in tables:
            rows = await conn.execute(text(f"SELECT t::text FROM {table} t"))
            dump.extend(rows.scalars())
    everything = "\n".join(dump)
    assert "赵六" in everything  # the scan does see the application
    assert id_number not in everything
    assert phone not in everything
