"""The public notice's day can be compressed (`RELIEF_NOTICE_DAY_SECONDS`, for `relief replay`
and load tests): the notice then ends `public_notice_days × notice_day_seconds` after it
starts, and the case can leave the village review once that has passed. Production refuses
any other length than a real day."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.verification.app import create_app as create_verification
from services.verification.settings import VerificationSettings
from tests.integration.conftest import (
    FIELD_CHECK,
    Pipeline,
    _running,
    citizen_headers,
    staff_headers,
    submit,
)

NOTICE_DAYS = 5  # 最低生活保障 in shared/data/catalog.toml


async def _enter_village_review(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    clerk_name: str,
) -> tuple[str, dict[str, str]]:
    citizen = await citizen_headers(intake, f"openid-{clerk_name}")
    created = await submit(intake, citizen, item_code="subsistence_allowance")
    assert created.status_code == 201, created.text
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username=clerk_name, department="civil")
    queue = (await verification.get("/api/v1/cases?status=open", headers=clerk)).json()
    case_id = next(c["id"] for c in queue["items"] if c["application_id"] == created.json()["id"])
    url = f"/api/v1/cases/{case_id}"
    assert (await verification.post(f"{url}/claim", headers=clerk)).is_success
    assert (await verification.post(f"{url}/advance", headers=clerk, json={})).is_success
    checked = await verification.post(f"{url}/field-check", headers=clerk, json=FIELD_CHECK)
    assert checked.is_success, checked.text
    entered = await verification.post(f"{url}/advance", headers=clerk, json={})
    assert entered.json()["status"] == "village_review", entered.text
    return url, clerk


async def _notice_length(verification: httpx.AsyncClient, url: str, clerk: dict[str, str]) -> float:
    notice = (await verification.get(f"{url}/notice", headers=clerk)).json()
    starts = datetime.fromisoformat(notice["starts_at"])
    ends = datetime.fromisoformat(notice["ends_at"])
    return (ends - starts).total_seconds()


async def test_a_notice_lasts_real_days_by_default(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    url, clerk = await _enter_village_review(
        intake, verification, pipeline, sessionmaker, "civil-real-days"
    )
    assert await _notice_length(verification, url, clerk) == NOTICE_DAYS * 86_400


async def test_a_compressed_notice_ends_after_days_times_the_day_length(
    intake: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    settings = VerificationSettings(notice_day_seconds=1)
    async for verification in _running(create_verification(settings), "verification"):
        url, clerk = await _enter_village_review(
            intake, verification, pipeline, sessionmaker, "civil-short-days"
        )
        assert await _notice_length(verification, url, clerk) == NOTICE_DAYS * 1
        early = await verification.post(f"{url}/advance", headers=clerk, json={})
        assert early.status_code == 409, early.text
        assert early.json()["error"]["code"] == "public_notice_running"

        ends = datetime.fromisoformat(early.json()["error"]["details"]["notice_ends_at"])
        await asyncio.sleep((ends - datetime.now(UTC)).total_seconds() + 0.1)
        passed = await verification.post(f"{url}/advance", headers=clerk, json={})
        assert passed.status_code == 200, passed.text
        assert passed.json()["status"] == "township_audit"


def _production(**overrides: object) -> VerificationSettings:
    secret = "s" * 20 + "t" * 20
    return VerificationSettings(
        env="prod",
        jwt_secret=secret,
        pii_hash_key=secret[::-1],
        pii_keys={"k1": base64.b64encode(os.urandom(32)).decode()},
        pii_active_key_id="k1",
        **overrides,  # type: ignore[arg-type]
    )


def test_production_refuses_a_compressed_day() -> None:
    assert _production().notice_day == timedelta(days=1)
    with pytest.raises(ValidationError, match="RELIEF_NOTICE_DAY_SECONDS"):
        _production(notice_day_seconds=1)


def test_the_day_length_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_NOTICE_DAY_SECONDS", "2")
    assert VerificationSettings().notice_day == timedelta(seconds=2)
