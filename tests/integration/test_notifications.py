"""Citizen notifications through real HTTP servers that speak WeChat's and an SMS gateway's
JSON: once per event, WeChat then SMS, retries with backoff, dead letters and replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.notifications.sender import Sender
from services.notify.settings import NotifySettings
from shared.auth import Role
from shared.events import route_stream
from tests.factories import resident_id
from tests.integration.conftest import (
    Pipeline,
    citizen_headers,
    staff_headers,
    statements_run,
    stream_entries,
    submit,
)
from tests.outside.providers import APPID, SECRET, SMS_KEY, ProviderServer, provider_server

TEMPLATES = {
    "accepted": "tmpl-accepted",
    "info_requested": "tmpl-info",
    "decided": "tmpl-decided",
    "transferred": "tmpl-transferred",
}


@pytest.fixture
def providers() -> Iterator[ProviderServer]:
    with provider_server() as server:
        yield server


def _settings(server: ProviderServer, *, wechat: bool = True, **extra: Any) -> NotifySettings:
    values: dict[str, Any] = {
        "sms_base_url": server.base_url,
        "sms_api_key": SMS_KEY,
        "notify_backoff_base_seconds": 0.01,
        "notify_backoff_max_seconds": 0.05,
        "provider_timeout_seconds": 2.0,
        **extra,
    }
    if wechat:
        values |= {
            "wechat_base_url": server.base_url,
            "wechat_appid": APPID,
            "wechat_secret": SECRET,
            "wechat_templates": TEMPLATES,
        }
    return NotifySettings(**values)


async def _deliver_until_settled(
    sender: Sender, sessionmaker: async_sessionmaker[AsyncSession], rounds: int = 30
) -> None:
    for _ in range(rounds):
        await sender.deliver_due(sessionmaker)
        await asyncio.sleep(0.06)  # longer than the test backoff


async def _notifications(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, kind, status, channel, attempts, text, recipient_openid "
                "FROM notify.notifications ORDER BY created_at"
            )
        )
        return [dict(r._mapping) for r in rows]


async def _attempts(engine: AsyncEngine) -> list[tuple[str, bool, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT channel, ok, error_code FROM notify.delivery_attempts ORDER BY id")
        )
        return [(r.channel, r.ok, r.error_code) for r in rows]


@pytest.fixture
async def accepted(
    intake: httpx.AsyncClient, pipeline: Pipeline, redis: Redis
) -> AsyncIterator[dict[str, str]]:
    """One application, accepted by its department: one notification queued."""
    citizen = await citizen_headers(intake, "openid-notify")
    id_number = resident_id(seq=808)
    created = await submit(
        intake, citizen, applicant={"name": "钱七", "id_number": id_number, "phone": "13688889999"}
    )
    assert created.status_code == 201
    await pipeline.drain()
    yield {"application_id": created.json()["id"], "id_number": id_number}


async def test_one_message_per_event_even_when_delivered_twice(
    accepted: dict[str, str],
    pipeline: Pipeline,
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    events = await stream_entries(redis, "relief:events")
    opened: dict[Any, Any] = next(f for _, f in events if '"case.opened"' in f["envelope"])
    for _ in range(2):
        await redis.xadd("relief:events", opened)
    await pipeline.drain()
    notifications = await _notifications(engine)
    assert [(n["kind"], n["status"]) for n in notifications] == [("accepted", "pending")]

    sender = Sender(_settings(providers), redis)
    await _deliver_until_settled(sender, sessionmaker)
    await _deliver_until_settled(sender, sessionmaker, rounds=2)
    assert len(providers.script.wechat_sent) == 1
    sent = providers.script.wechat_sent[0]
    assert sent["touser"] == "openid-notify"
    assert sent["template_id"] == "tmpl-accepted"
    assert sent["data"]["thing1"]["value"] == "医疗救助"
    assert sent["data"]["phrase2"]["value"] == "已受理"
    notification = (await _notifications(engine))[0]
    assert (notification["status"], notification["channel"]) == ("sent", "wechat")
    assert "医疗救助" in notification["text"]
    assert accepted["id_number"] not in notification["text"]
    assert "13688889999" not in notification["text"]
    assert await _attempts(engine) == [("wechat", True, None)]


async def test_access_token_is_cached_and_refreshed_when_wechat_says_it_expired(
    intake: httpx.AsyncClient,
    pipeline: Pipeline,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    citizen = await citizen_headers(intake, "openid-token")
    for _ in range(2):
        await submit(intake, citizen, applicant={"id_number": resident_id()})
    await pipeline.drain()
    sender = Sender(_settings(providers), redis)
    await _deliver_until_settled(sender, sessionmaker, rounds=2)
    assert len(providers.script.wechat_sent) == 2
    assert len(providers.script.token_requests) == 1  # cached in Redis for the second

    providers.expire_tokens()
    await submit(intake, citizen, applicant={"id_number": resident_id()})
    await pipeline.drain()
    await _deliver_until_settled(sender, sessionmaker, rounds=2)
    assert len(providers.script.wechat_sent) == 3
    assert providers.script.token_requests[-1]["force_refresh"] is True


async def test_not_subscribed_on_wechat_falls_back_to_sms(
    accepted: dict[str, str],
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    providers.script.wechat_send.append((200, {"errcode": 43101, "errmsg": "user refuse"}))
    with statements_run() as statements:
        await _deliver_until_settled(Sender(_settings(providers), redis), sessionmaker, rounds=2)
    assert await _attempts(engine) == [("wechat", False, "43101"), ("sms", True, None)]
    # both tries logged in one INSERT at the commit that records the delivery, a Core
    # statement (the ORM's asked for the ids back, which nothing reads)
    logged = [s for s in statements if "INSERT INTO notify.delivery_attempts" in s]
    assert len(logged) == 1, logged
    assert "RETURNING" not in logged[0]
    sms = providers.script.sms_sent[0]
    assert sms["phone"] == "13688889999"
    assert sms["text"].startswith("【云南省政府救助平台】")
    assert (await _notifications(engine))[0]["channel"] == "sms"


async def test_transient_failures_are_retried_with_backoff(
    accepted: dict[str, str],
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    # No WeChat configured: the SMS gateway fails twice (a 503, then "busy") then works.
    providers.script.sms_send.extend(
        [(503, {}), (200, {"code": "SYSTEM_ERROR", "message": "busy"})]
    )
    sender = Sender(_settings(providers, wechat=False), redis)
    await sender.deliver_due(sessionmaker)
    first = (await _notifications(engine))[0]
    assert (first["status"], first["attempts"]) == ("pending", 1)
    await _deliver_until_settled(sender, sessionmaker)
    done = (await _notifications(engine))[0]
    assert (done["status"], done["attempts"], done["channel"]) == ("sent", 3, "sms")
    assert [a[1] for a in await _attempts(engine)] == [False, False, True]


async def test_a_message_that_keeps_failing_is_dead_lettered_and_can_be_replayed(
    accepted: dict[str, str],
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
    notify: httpx.AsyncClient,
    verification: httpx.AsyncClient,
) -> None:
    providers.script.sms_send.extend([(500, {})] * 3)
    sender = Sender(_settings(providers, wechat=False, notify_max_attempts=3), redis)
    await _deliver_until_settled(sender, sessionmaker)
    dead = (await _notifications(engine))[0]
    assert (dead["status"], dead["attempts"]) == ("dead", 3)
    assert len(providers.script.sms_sent) == 3

    admin = await staff_headers(
        verification,
        sessionmaker,
        username="ops-admin",
        role=Role.ADMIN,
        department=None,
        region="530000",
    )
    listed = (await notify.get("/api/v1/notifications?status=dead", headers=admin)).json()
    assert [n["id"] for n in listed["items"]] == [str(dead["id"])]
    detail = (await notify.get(f"/api/v1/notifications/{dead['id']}", headers=admin)).json()
    assert [a["ok"] for a in detail["delivery_log"]] == [False, False, False]
    clerk = await staff_headers(verification, sessionmaker, username="not-ops")
    assert (await notify.get("/api/v1/notifications", headers=clerk)).status_code == 403

    replayed = await notify.post(f"/api/v1/notifications/{dead['id']}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "pending"
    again = await notify.post(f"/api/v1/notifications/{dead['id']}/replay", headers=admin)
    assert again.status_code == 409
    await _deliver_until_settled(sender, sessionmaker, rounds=2)  # the gateway works again
    assert (await _notifications(engine))[0]["status"] == "sent"


async def test_a_refused_phone_is_dead_at_once(
    accepted: dict[str, str],
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    providers.script.sms_send.append((200, {"code": "INVALID_PHONE", "message": "空号"}))
    await _deliver_until_settled(Sender(_settings(providers, wechat=False), redis), sessionmaker)
    notification = (await _notifications(engine))[0]
    assert (notification["status"], notification["attempts"]) == ("dead", 1)


async def test_every_citizen_facing_event_gets_its_own_chinese_message(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    citizen = await citizen_headers(intake, "openid-story")
    await submit(intake, citizen)
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-story")
    case_id = (await verification.get("/api/v1/cases", headers=clerk)).json()["items"][0]["id"]
    url = f"/api/v1/cases/{case_id}"
    await verification.post(f"{url}/claim", headers=clerk)
    await verification.post(f"{url}/request-info", headers=clerk, json={"message": "请补充发票"})
    await verification.post(
        f"{url}/decide", headers=clerk, json={"outcome": "rejected", "reason": "已享受同类救助"}
    )
    await pipeline.drain()
    kinds_and_texts = [(n["kind"], n["text"]) for n in await _notifications(engine)]
    assert [k for k, _ in kinds_and_texts] == ["accepted", "info_requested", "decided"]
    assert "请补充发票" in kinds_and_texts[1][1]
    assert "已享受同类救助" in kinds_and_texts[2][1]
    assert all(t.startswith("【云南省政府救助平台】") for _, t in kinds_and_texts)
    assert len(await stream_entries(redis, route_stream("medins"))) >= 1


async def _submitted(intake: httpx.AsyncClient, pipeline: Pipeline, count: int) -> None:
    """`count` applications, each accepted by its department: one notification each."""
    citizen = await citizen_headers(intake, "openid-batch")
    for _ in range(count):
        created = await submit(intake, citizen, applicant={"id_number": resident_id()})
        assert created.status_code == 201, created.text
    await pipeline.drain()


def _locks(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM notify.notifications" in s and "SKIP LOCKED" in s]


async def test_a_batch_is_sent_at_once_and_committed_together(
    intake: httpx.AsyncClient,
    pipeline: Pipeline,
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    await _submitted(intake, pipeline, 5)
    providers.script.send_seconds = 0.2  # a provider's latency, paid once per batch
    sender = Sender(_settings(providers), redis)
    with statements_run() as statements:
        assert await sender.deliver_due(sessionmaker) == 5
    assert [n["status"] for n in await _notifications(engine)] == ["sent"] * 5
    assert providers.script.most_in_flight == 5
    # The sends began together without a token cached: one of them fetched it.
    assert len(providers.script.token_requests) == 1
    assert len(_locks(statements)) == 1
    assert len([s for s in statements if "INSERT INTO notify.delivery_attempts" in s]) == 1


async def test_a_sweep_takes_the_due_in_batches_of_the_set_size(
    intake: httpx.AsyncClient,
    pipeline: Pipeline,
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    await _submitted(intake, pipeline, 5)
    sender = Sender(_settings(providers, sender_batch_size=2), redis)
    with statements_run() as statements:
        assert await sender.deliver_due(sessionmaker) == 5
    assert len(_locks(statements)) == 3  # 2 + 2 + 1: the short batch says nothing is left
    assert providers.script.most_in_flight <= 2
    assert [n["status"] for n in await _notifications(engine)] == ["sent"] * 5


async def test_a_fault_delivering_one_message_leaves_the_rest_of_its_batch_delivered(
    intake: httpx.AsyncClient,
    pipeline: Pipeline,
    redis: Redis,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: ProviderServer,
) -> None:
    await _submitted(intake, pipeline, 3)
    # An answer the WeChat channel does not expect (an errcode that is a list): its
    # TypeError is a fault of ours, not a provider's refusal.
    providers.script.wechat_send.append((200, {"errcode": [45009], "errmsg": "?"}))
    sender = Sender(_settings(providers, wechat=True, sms_base_url=""), redis)
    assert await sender.deliver_due(sessionmaker) == 3
    notifications = await _notifications(engine)
    assert sorted(n["status"] for n in notifications) == ["pending", "sent", "sent"]
    [failed] = [n for n in notifications if n["status"] == "pending"]
    assert failed["attempts"] == 1
    async with engine.connect() as conn:
        error = await conn.scalar(
            text("SELECT last_error FROM notify.notifications WHERE id = :id"),
            {"id": failed["id"]},
        )
    assert error.startswith("internal_error")
    # Retried later like any failed try: the provider answers normally again.
    await _deliver_until_settled(sender, sessionmaker, rounds=3)
    assert [n["status"] for n in await _notifications(engine)] == ["sent"] * 3
