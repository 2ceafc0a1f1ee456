"""A case answer lists the application's attachments, read in the case's own query: the
case lock, the claim and the plain read each bring them, in every kind of scope."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.verification.cases import service
from services.verification.cases.repository import RegionLevel, Scope
from services.verification.models import Case
from shared.auth import Role
from tests.factories import JPEG, PDF
from tests.integration.conftest import (
    Pipeline,
    citizen_headers,
    staff_headers,
    statements_run,
    submit,
)


def _attachment_queries(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "case_attachments" in sql]


async def test_a_case_answer_brings_its_attachments_in_the_case_query(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-case-answers")
    app_id = (await submit(intake, citizen)).json()["id"]
    uploaded = []
    for name, data, kind in (
        ("房屋.jpg", JPEG, "image/jpeg"),
        ("发票.pdf", PDF, "application/pdf"),
    ):
        response = await intake.post(
            f"/api/v1/applications/{app_id}/attachments",
            headers=citizen,
            files={"file": (name, data, kind)},
        )
        assert response.status_code == 201, response.text
        uploaded.append(response.json())
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-answers")
    case_id = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]["id"]
    expected = [
        {
            "id": a["id"],
            "content_type": a["content_type"],
            "size": a["size"],
            "filename": a["filename"],
        }
        for a in uploaded
    ]

    def listed(answer: httpx.Response) -> list[dict[str, object]]:
        assert answer.status_code == 200, answer.text
        return [
            {key: a[key] for key in ("id", "content_type", "size", "filename")}
            for a in answer.json()["attachments"]
        ]

    supervisor = await staff_headers(
        verification, sessionmaker, username="medins-prefecture", role=Role.SUPERVISOR,
        region="530100",
    )  # fmt: skip
    admin = await staff_headers(
        verification, sessionmaker, username="admin-answers", role=Role.ADMIN, department=None,
        region="530000",
    )  # fmt: skip
    for who, path, headers in (
        ("clerk reads", "", clerk),
        ("supervisor reads", "", supervisor),
        ("admin reads", "", admin),
        ("clerk claims", "/claim", clerk),
        ("clerk advances", "/advance", clerk),  # the case locked for the change
    ):
        with statements_run() as statements:
            if path:
                body = {"note": ""} if path == "/advance" else None
                answer = await verification.post(
                    f"/api/v1/cases/{case_id}{path}", headers=headers, json=body
                )
            else:
                answer = await verification.get(f"/api/v1/cases/{case_id}", headers=headers)
        assert listed(answer) == expected, who
        # One statement touches the attachments: the one that reads (or claims) the case.
        queries = _attachment_queries(statements)
        assert len(queries) == 1, (who, [q[:300] for q in queries])
        [query] = queries
        assert re.search(r"\b(FROM|UPDATE) verification\.cases\b", query), who

    # A case loaded without them (here by primary key) still lists them, by a query.
    async with sessionmaker() as session:
        case = await session.get(Case, uuid.UUID(case_id))
        assert case is not None and case.attachments is None
        detail = await service.detail(session, case)
    assert [a.model_dump(mode="json", exclude={"added_at"}) for a in detail.attachments] == expected


async def test_a_case_without_attachments_lists_none(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-no-attachments")
    assert (await submit(intake, citizen)).status_code == 201
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-no-attachments")
    case_id = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]["id"]
    claimed = await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["attachments"] == []


def test_a_scope_names_the_digits_its_counties_share() -> None:
    assert Scope("medins", "530129").level is RegionLevel.COUNTY
    assert Scope("medins", "530129").region_prefix == "530129"
    assert Scope("medins", "530100").level is RegionLevel.PREFECTURE
    assert Scope("medins", "530100").region_prefix == "5301"
    assert Scope(None, "530000").level is RegionLevel.PROVINCE
    assert Scope(None, "530000").params() == {"scope_department": None, "scope_region": "53"}
