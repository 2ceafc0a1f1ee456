"""WeChat login through a real HTTP server that speaks jscode2session, refresh tokens, and the
login rate limit."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import intake_with
from tests.outside.wechat import APPID, SECRET, WechatServer, wechat_server


@pytest.fixture
def wechat() -> Iterator[WechatServer]:
    with wechat_server() as server:
        yield server


def _wechat_settings(server: WechatServer, **extra: object) -> dict[str, object]:
    return {
        "wechat_base_url": server.base_url,
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_timeout_seconds": 1.0,
        **extra,
    }


async def test_a_valid_code_logs_in_and_the_session_key_stays_server_side(
    wechat: WechatServer, engine: AsyncEngine
) -> None:
    async with intake_with(**_wechat_settings(wechat)) as intake:
        response = await intake.post("/api/v1/auth/wechat", json={"code": "good-oAbc123"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["role"] == "citizen"
        assert body["token_type"] == "bearer"
        assert "session_key" not in response.text
        assert "SK-oAbc123-secret" not in response.text
        mine = await intake.get(
            "/api/v1/applications", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert mine.status_code == 200
    assert wechat.requests[0]["js_code"] == "good-oAbc123"
    assert wechat.requests[0]["grant_type"] == "authorization_code"
    async with engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT session_key_enc FROM intake.wechat_sessions"))
        ).scalar_one()
    assert "SK-oAbc123-secret" not in stored


@pytest.mark.parametrize(
    ("code", "status", "error_code"),
    [
        ("invalid", 401, "wechat_code_invalid"),
        ("used", 401, "wechat_code_invalid"),
        ("limited", 429, "rate_limited"),
        ("busy", 503, "service_unavailable"),
        ("risky", 403, "wechat_user_blocked"),
        ("html", 503, "service_unavailable"),
        ("slow", 503, "service_unavailable"),
    ],
)
async def test_wechat_errors_become_clear_answers(
    wechat: WechatServer, code: str, status: int, error_code: str
) -> None:
    async with intake_with(**_wechat_settings(wechat)) as intake:
        response = await intake.post("/api/v1/auth/wechat", json={"code": code})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == error_code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
    if status in (429, 503):
        assert int(response.headers["Retry-After"]) > 0


async def test_wrong_app_secret_is_an_outage_not_the_citizens_fault(wechat: WechatServer) -> None:
    settings = _wechat_settings(wechat, wechat_secret="not-the-secret")
    async with intake_with(**settings) as intake:
        response = await intake.post("/api/v1/auth/wechat", json={"code": "good-x"})
    assert response.status_code == 503


async def test_wechat_unreachable_is_503(infra: object) -> None:
    async with intake_with(
        wechat_base_url="http://127.0.0.1:9", wechat_appid=APPID, wechat_secret=SECRET
    ) as intake:
        response = await intake.post("/api/v1/auth/wechat", json={"code": "good-x"})
    assert response.status_code == 503


def _prod_settings() -> dict[str, object]:
    return {
        "env": "prod",
        "jwt_secret": "p" * 40,
        "pii_hash_key": "h" * 40,
        "pii_keys": {"k1": base64.b64encode(os.urandom(32)).decode()},
        "pii_active_key_id": "k1",
    }


async def test_dev_codes_are_refused_in_production(wechat: WechatServer) -> None:
    async with intake_with(**_wechat_settings(wechat), **_prod_settings()) as intake:
        response = await intake.post("/api/v1/auth/wechat", json={"code": "dev:someone"})
    assert response.status_code == 401
    assert wechat.requests == []


async def test_refresh_token_rotates_and_a_reused_one_ends_the_family(infra: object) -> None:
    async with intake_with() as intake:
        login = (await intake.post("/api/v1/auth/wechat", json={"code": "dev:refresher"})).json()
        first = login["refresh_token"]
        rotated = await intake.post("/api/v1/auth/refresh", json={"refresh_token": first})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["refresh_token"]
        assert second != first
        headers = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
        assert (await intake.get("/api/v1/applications", headers=headers)).status_code == 200

        # The first token again: somebody has a copy. Both it and its successor stop working.
        reused = await intake.post("/api/v1/auth/refresh", json={"refresh_token": first})
        assert reused.status_code == 401
        assert reused.json()["error"]["code"] == "refresh_token_invalid"
        successor = await intake.post("/api/v1/auth/refresh", json={"refresh_token": second})
        assert successor.status_code == 401

        garbage = await intake.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
        assert garbage.status_code == 401


async def test_logins_from_one_address_are_rate_limited(infra: object) -> None:
    async with intake_with(rate_login_per_ip="3/minute") as intake:
        statuses = [
            (await intake.post("/api/v1/auth/wechat", json={"code": f"dev:user{n}"})).status_code
            for n in range(4)
        ]
        limited = await intake.post("/api/v1/auth/wechat", json={"code": "dev:user9"})
    assert statuses == [200, 200, 200, 429]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60


async def test_logins_of_one_user_are_rate_limited_across_addresses(infra: object) -> None:
    async with intake_with(rate_login_per_user="2/minute") as intake:
        statuses = [
            (await intake.post("/api/v1/auth/wechat", json={"code": "dev:same-user"})).status_code
            for _ in range(3)
        ]
        other = await intake.post("/api/v1/auth/wechat", json={"code": "dev:other-user"})
    assert statuses == [200, 200, 429]
    assert other.status_code == 200
