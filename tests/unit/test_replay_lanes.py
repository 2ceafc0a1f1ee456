"""The replay's HTTP lanes against a small real server on loopback: answers read whole,
load shedding retried after its Retry-After, a service that never recovers reported."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.bench import lanes
from services.bench.lanes import Lanes, ReplayError


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A service that sheds the first two tries of /busy and always sheds /down."""
    seen: list[web.Request] = []

    async def busy(request: web.Request) -> web.Response:
        seen.append(request)
        if len(seen) <= 2:
            return web.json_response({"error": {"code": "overloaded"}}, status=503,
                                     headers={"Retry-After": "0"})  # fmt: skip
        body = await request.json()
        return web.json_response({"echo": body, "auth": request.headers["Authorization"]})

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_post("/busy", busy)
    app.router.add_get("/down", down)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_shed_requests_are_tried_again_and_counted(
    service: tuple[str, list[web.Request]],
) -> None:
    url, seen = service
    api = Lanes(4)
    try:
        answer = await api.call("POST", f"{url}/busy", name="busy", token="t", json={"n": "一"})
    finally:
        await api.aclose()
    assert answer.status_code == 200
    assert answer.json() == {"echo": {"n": "一"}, "auth": "Bearer t"}
    assert len(seen) == 3
    assert (api.requests["busy"], api.retries) == (3, 2)
    assert set(api.latency_ms()["busy"]) == {"p50", "p95", "max"}


async def test_a_service_that_never_recovers_fails_the_replay(
    service: tuple[str, list[web.Request]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = service
    monkeypatch.setattr(lanes, "MAX_ATTEMPTS", 3)
    api = Lanes(1)
    try:
        with pytest.raises(ReplayError, match="failed 3 times: HTTP 503"):
            await api.call("GET", f"{url}/down", name="down", token="t")
        with pytest.raises(ReplayError, match="failed 3 times: ClientConnectorError"):
            await api.call("GET", "http://127.0.0.1:9/", name="closed port", token="t")
    finally:
        await api.aclose()
