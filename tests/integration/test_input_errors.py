"""Bad input gets a 422 with a stable code, the field and a Chinese message; nothing is
written."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shared.db import create_engine
from shared.settings import ServiceSettings
from tests.factories import application_body
from tests.integration.conftest import citizen_headers

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        (
            {"applicant": {"id_number": "530129197503121230"}},
            "applicant.id_number",
            "id_number_checksum",
        ),
        ({"applicant": {"id_number": "5301291975"}}, "applicant.id_number", "id_number_length"),
        ({"applicant": {"phone": "12345"}}, "applicant.phone", "phone_invalid"),
        ({"household": {"region_code": "110105"}}, "household.region_code", "region_invalid"),
        ({"household": {"size": 0}}, "household.size", "greater_than_equal"),
        ({"household": {"category": "rich"}}, "household.category", "enum"),
        ({"household": {"size": 31}}, "household.size", "less_than_equal"),
        (
            {"household": {"annual_income_per_capita": -1}},
            "household.annual_income_per_capita",
            "greater_than_equal",
        ),
        ({"household": {"address": "村" * 201}}, "household.address", "string_too_long"),
        ({"applicant": {"name": "张" * 51}}, "applicant.name", "string_too_long"),
        ({"description": "困" * 2001}, "description", "string_too_long"),
        ({"description": ""}, "description", "string_too_short"),
        ({"surprise": 1}, "surprise", "extra_forbidden"),
    ],
)
async def test_invalid_fields_are_named_with_a_chinese_message(
    intake: httpx.AsyncClient, overrides: dict[str, Any], field: str, code: str
) -> None:
    citizen = await citizen_headers(intake, "openid-bad-input")
    response = await intake.post(
        "/api/v1/applications",
        json=application_body(**overrides),
        headers={**citizen, "Idempotency-Key": "bad-input-key-1"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert CJK.search(error["message"])
    matching = [d for d in error["details"] if d["field"] == field]
    assert matching, error["details"]
    assert matching[0]["code"] == code
    assert CJK.search(matching[0]["message"])
    mine = (await intake.get("/api/v1/applications", headers=citizen)).json()
    assert mine["items"] == []


async def test_unknown_item_and_missing_idempotency_key(intake: httpx.AsyncClient) -> None:
    citizen = await citizen_headers(intake, "openid-e")
    unknown = await intake.post(
        "/api/v1/applications",
        json=application_body(item_code="free_money"),
        headers={**citizen, "Idempotency-Key": "unknown-item-1"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "item_unknown"
    no_key = await intake.post("/api/v1/applications", json=application_body(), headers=citizen)
    assert no_key.status_code == 422
    assert no_key.json()["error"]["code"] == "idempotency_key_required"


async def test_malformed_json_and_bad_tokens_are_client_errors(intake: httpx.AsyncClient) -> None:
    citizen = await citizen_headers(intake, "openid-f")
    broken = await intake.post(
        "/api/v1/applications",
        content=b'{"item_code": ',
        headers={**citizen, "Idempotency-Key": "broken-json-1", "Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    assert CJK.search(broken.json()["error"]["message"])
    tampered = citizen["Authorization"][:-3] + "abc"
    response = await intake.get("/api/v1/applications", headers={"Authorization": tampered})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    unknown_route = await intake.get("/api/v1/nothing-here")
    assert unknown_route.status_code == 404
    assert unknown_route.json()["error"]["code"] == "not_found"


async def test_health_and_readiness(intake: httpx.AsyncClient) -> None:
    assert (await intake.get("/healthz")).json()["status"] == "ok"
    ready = await intake.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "redis": True}
    assert ready.headers["x-request-id"]


async def test_catalog_serves_every_items_form(intake: httpx.AsyncClient) -> None:
    catalog = (await intake.get("/api/v1/catalog")).json()
    assert len(catalog["departments"]) == 7
    assert len(catalog["items"]) == 15
    medical = next(i for i in catalog["items"] if i["code"] == "medical_assistance")
    fields = {f["name"]: f for f in medical["form"]}
    assert fields["hospital_name"]["required"] is True
    assert CJK.search(fields["hospital_name"]["label"])
    assert all(item["form"] for item in catalog["items"])


async def test_item_form_errors_name_each_field(intake: httpx.AsyncClient) -> None:
    citizen = await citizen_headers(intake, "openid-form")
    body = application_body(
        form={"hospital_name": "", "total_medical_cost": "-5", "favourite_colour": "红"}
    )
    body["form"].pop("hospitalized_from")
    response = await intake.post(
        "/api/v1/applications", json=body, headers={**citizen, "Idempotency-Key": "form-errs-1"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "form_invalid"
    codes = {d["field"]: d["code"] for d in error["details"]}
    assert codes["form.hospital_name"] == "form_field_required"
    assert codes["form.hospitalized_from"] == "form_field_required"
    assert codes["form.total_medical_cost"] == "form_field_too_small"
    assert codes["form.favourite_colour"] == "form_field_unknown"
    assert all(CJK.search(d["message"]) for d in error["details"])


async def test_the_prescreen_hint_travels_with_the_application(intake: httpx.AsyncClient) -> None:
    citizen = await citizen_headers(intake, "openid-prescreen")
    created = await intake.post(
        "/api/v1/applications",
        json=application_body(household={"annual_income_per_capita": "6200.00"}),
        headers={**citizen, "Idempotency-Key": "prescreen-1"},
    )
    assert created.status_code == 201
    engine = create_engine(ServiceSettings(), application_name="test")
    try:
        async with engine.connect() as conn:
            hint = (
                await conn.execute(
                    text("SELECT prescreen FROM intake.applications WHERE id = :id"),
                    {"id": created.json()["id"]},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert hint["below_line"] is True
    assert hint["level"] == "below_line"
    assert "监测线" in hint["hint_zh"]


async def test_text_postgres_cannot_hold_is_refused_not_a_500(intake: httpx.AsyncClient) -> None:
    """A NUL character (JSON "\\u0000") anywhere: 422, and nothing written."""
    login = await intake.post("/api/v1/auth/wechat", json={"code": "dev:有\x00误"})
    assert login.status_code == 422
    assert login.json()["error"]["code"] == "text_invalid_characters"
    citizen = await citizen_headers(intake, "openid-nul")
    for body in (
        application_body(description="家中困难\x00请帮助"),
        application_body(form={"hospital_name": "县\x00医院"}),
    ):
        response = await intake.post(
            "/api/v1/applications", json=body, headers={**citizen, "Idempotency-Key": "nul-1234"}
        )
        assert response.status_code == 422, response.text
        assert CJK.search(response.json()["error"]["message"])
    assert (await intake.get("/api/v1/applications", headers=citizen)).json()["items"] == []
