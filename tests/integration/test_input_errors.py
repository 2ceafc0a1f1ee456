"""Bad input gets a 422 with a stable code, the field and a Chinese message; nothing is
written."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

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
