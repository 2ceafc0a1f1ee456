"""Past capacity a service answers at once with 503 + Retry-After instead of letting requests
pile up in front of the database pool until clients time out.

The apps are built by `create_service_app` with the middleware that ships; a test-only
route holds its request on an `asyncio.Event` so the limit is reached on purpose. The real
intake app is driven past its pool as well: one pooled connection, held by the test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from shared.db import DbSession
from shared.settings import ServiceSettings
from shared.web import create_service_app
from tests.conftest import Infra
from tests.integration.conftest import citizen_headers

SERVICE = "shedtest"
IN_FLIGHT = "relief_http_requests_in_flight"
OVERLOADED = {"code": "overloaded", "message": "系统繁忙，请稍后再试", "details": None}
# Generous: the refusals come back in milliseconds; this only catches a hang.
QUICK = 5.0


class Gate:
    """Holds requests to /api/v1/held until released; `arrived` is set once `expected` of
    them are inside."""

    def __init__(self, expected: int = 1) -> None:
        self.expected = expected
        self.entered = 0
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/held")
        async def held() -> dict[str, str]:
            self.entered += 1
            if self.entered >= self.expected:
                self.arrived.set()
            await self.release.wait()
            return {"status": "done"}

        @router.get("/quick")
        async def quick() -> dict[str, str]:
            return {"status": "ok"}

        @router.get("/database")
        async def database(session: DbSession) -> dict[str, int]:
            return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

        return router


def service_app(gate: Gate, **settings: Any) -> FastAPI:
    return create_service_app(
        name=SERVICE,
        title="load shedding test",
        settings=ServiceSettings(**settings),
        routers=[gate.router()],
    )


@asynccontextmanager
async def running(app: FastAPI, gate: Gate | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        try:
            yield c
        finally:
            if gate is not None:  # a failed test must not leave requests held forever
                gate.release.set()


async def metric(client: httpx.AsyncClient, name: str, service: str = SERVICE) -> float:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    found = [
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("service") == service
    ]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


async def until_metric(client: httpx.AsyncClient, name: str, expected: float) -> None:
    async with asyncio.timeout(QUICK):
        while await metric(client, name) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def assert_overloaded(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"]
    assert response.json() == {"error": OVERLOADED}


async def test_past_the_limit_requests_are_refused_at_once_and_health_still_answers(
    infra: Infra,
) -> None:
    gate = Gate()
    app = service_app(gate, max_inflight_requests=1, admission_wait_ms=100)
    async with running(app, gate) as client:
        held = asyncio.create_task(client.post("/api/v1/held"))
        async with asyncio.timeout(QUICK):
            await gate.arrived.wait()

        # One waits its 100 ms for the slot, the others find the waiting line full; none of
        # them waits for the held request.
        async with asyncio.timeout(QUICK):
            refused = await asyncio.gather(*(client.get("/api/v1/quick") for _ in range(5)))
        assert not held.done()
        for response in refused:
            assert_overloaded(response)

        # Health, readiness and metrics are never shed.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert await metric(client, "relief_http_shed_total") == 5
        assert await metric(client, "relief_http_requests_in_flight") == 1
        assert await metric(client, "relief_http_requests_waiting") == 0
        assert not held.done()

        gate.release.set()
        async with asyncio.timeout(QUICK):
            finished = await held
        assert finished.status_code == 200
        assert finished.json() == {"status": "done"}

        # The slot is free again: requests are admitted.
        again = await client.get("/api/v1/quick")
        assert again.status_code == 200, again.text
        assert await metric(client, "relief_http_requests_in_flight") == 0
        assert await metric(client, "relief_http_shed_total") == 5


async def test_a_waiting_request_gets_the_slot_a_finished_one_frees(infra: Infra) -> None:
    gate = Gate()
    # A long admission wait so that only the release, never the clock, lets it in.
    app = service_app(gate, max_inflight_requests=1, admission_wait_ms=10_000)
    async with running(app, gate) as client:
        held = asyncio.create_task(client.post("/api/v1/held"))
        async with asyncio.timeout(QUICK):
            await gate.arrived.wait()
        waiting = asyncio.create_task(client.get("/api/v1/quick"))
        await until_metric(client, "relief_http_requests_waiting", 1)

        # The waiting line holds as many as may run (one): the next is refused at once.
        async with asyncio.timeout(QUICK):
            assert_overloaded(await client.get("/api/v1/quick"))
        assert not waiting.done()

        gate.release.set()
        async with asyncio.timeout(QUICK):
            assert (await held).status_code == 200
            admitted = await waiting
        assert admitted.status_code == 200, admitted.text
        assert admitted.json() == {"status": "ok"}
        assert await metric(client, "relief_http_requests_in_flight") == 0
        assert await metric(client, "relief_http_requests_waiting") == 0
        assert await metric(client, "relief_http_shed_total") == 1


async def test_a_pool_timeout_is_answered_503_with_retry_after(infra: Infra) -> None:
    gate = Gate()
    app = service_app(gate, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.2)
    async with running(app) as client:
        assert (await client.get("/api/v1/database")).json() == {"one": 1}
        async with app.state.engine.connect() as holding_the_only_connection:
            await holding_the_only_connection.execute(text("SELECT 1"))
            async with asyncio.timeout(QUICK):
                response = await client.get("/api/v1/database")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        assert response.json() == {
            "error": {
                "code": "service_unavailable",
                "message": "系统繁忙，请稍后再试",
                "details": None,
            }
        }
        assert (await client.get("/api/v1/database")).json() == {"one": 1}


async def test_intake_sheds_while_its_requests_wait_for_the_pool(infra: Infra) -> None:
    """The starter's deadlock, in our intake: more requests than pooled connections, the
    pool held. The request in flight gets its 503 when the pool wait runs out; the requests
    past the limit get theirs at once, not after it."""
    app = create_intake(
        IntakeSettings(
            db_pool_size=1,
            db_max_overflow=0,
            db_pool_timeout_seconds=3,
            max_inflight_requests=1,
            admission_wait_ms=50,
        )
    )
    async with running(app) as intake:
        citizen = await citizen_headers(intake, "shed-citizen")
        assert (await intake.get("/api/v1/applications", headers=citizen)).status_code == 200
        async with app.state.engine.connect() as holding_the_only_connection:
            await holding_the_only_connection.execute(text("SELECT 1"))
            in_pool = asyncio.create_task(intake.get("/api/v1/applications", headers=citizen))
            # Read from the registry /metrics serves: a scrape would itself wait for the
            # pool (the outbox backlog gauge) while the test holds it.
            in_flight = {"service": "intake"}
            registry = app.state.metrics.registry
            async with asyncio.timeout(QUICK):
                while registry.get_sample_value(IN_FLIGHT, in_flight) != 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            async with asyncio.timeout(QUICK):
                refused = await asyncio.gather(
                    *(intake.get("/api/v1/applications", headers=citizen) for _ in range(3))
                )
            assert not in_pool.done()
            for response in refused:
                assert_overloaded(response)
            assert (await intake.get("/healthz")).status_code == 200
            async with asyncio.timeout(QUICK + 3):
                timed_out = await in_pool
        assert timed_out.status_code == 503, timed_out.text
        assert timed_out.headers["retry-after"].isdigit()
        assert timed_out.json()["error"]["code"] == "service_unavailable"
        assert await metric(intake, "relief_http_shed_total", "intake") == 3

        listed = await intake.get("/api/v1/applications", headers=citizen)
        assert listed.status_code == 200, listed.text


@asynccontextmanager
async def served(app: FastAPI, gate: Gate) -> AsyncIterator[str]:
    """`app` on a real uvicorn server on loopback, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(QUICK * 2):
            while not server.started:
                assert not serving.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        gate.release.set()  # uvicorn's shutdown waits for requests in flight
        server.should_exit = True
        await serving
        sock.close()


async def test_over_real_connections_the_excess_is_refused_at_once(infra: Infra) -> None:
    gate = Gate(expected=2)
    app = service_app(gate, max_inflight_requests=2, admission_wait_ms=100)
    connections = 64
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with (
        served(app, gate) as url,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client,
    ):
        held = [asyncio.create_task(client.post("/api/v1/held")) for _ in range(2)]
        async with asyncio.timeout(QUICK):
            await gate.arrived.wait()

        # With bodies the refusal never reads: the server must still answer each at once.
        body = {"note": "x" * 64_000}
        async with asyncio.timeout(QUICK):
            refused = await asyncio.gather(
                *(client.post("/api/v1/held", json=body) for _ in range(connections))
            )
        assert not any(task.done() for task in held)
        assert gate.entered == 2
        for response in refused:
            assert_overloaded(response)
        assert (await client.get("/healthz")).status_code == 200
        assert await metric(client, "relief_http_shed_total") == connections

        gate.release.set()
        async with asyncio.timeout(QUICK):
            for task in held:
                assert (await task).status_code == 200
            for _ in range(10):
                answered = await client.get("/api/v1/quick")
                assert answered.status_code == 200, answered.text
        assert await metric(client, "relief_http_requests_in_flight") == 0
