"""/metrics on every service: request counts by route template, the queue as each service
sees it (stream length, group lag and pending, dead letters, outbox backlog), and a scrape
that still answers while Redis or the database is down."""

from __future__ import annotations

import math
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.asyncio import Redis

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.verification.worker import GROUP as VERIFICATION_GROUP
from shared.events import EVENTS_STREAM, route_stream
from tests.conftest import Infra
from tests.integration.conftest import Pipeline, citizen_headers, submit

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


async def scrape(client: httpx.AsyncClient) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        yield c


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening), held for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_queue_and_requests_through_an_application(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    notify: httpx.AsyncClient,
    pipeline: Pipeline,
) -> None:
    citizen = await citizen_headers(intake, "metrics-citizen")
    created = await submit(intake, citizen)
    assert created.status_code == 201, created.text
    application = created.json()
    route = route_stream(application["department"])

    # Committed, not yet relayed: the route message and application.submitted.
    before = await scrape(intake)
    assert value(before, "relief_outbox_backlog", service="intake") == 2.0

    await pipeline.drain()
    detail = await intake.get(f"/api/v1/applications/{application['id']}", headers=citizen)
    assert detail.status_code == 200
    missing = await intake.get(f"/api/v1/nothing/{application['id']}")
    assert missing.status_code == 404

    after = await scrape(intake)
    assert value(after, "relief_outbox_backlog", service="intake") == 0.0
    assert (
        value(
            after,
            "relief_http_requests_total",
            service="intake",
            method="POST",
            route="/api/v1/applications",
            status="201",
        )
        == 1.0
    )
    assert (
        value(
            after,
            "relief_http_requests_total",
            method="GET",
            route="/api/v1/applications/{application_id}",
            status="200",
        )
        == 1.0
    )
    assert (
        value(after, "relief_http_requests_total", method="GET", route="unmatched", status="404")
        == 1.0
    )
    assert (
        value(
            after,
            "relief_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/applications",
        )
        == 1.0
    )
    # Intake follows relief:events; its group has read everything the verification side sent.
    assert value(after, "relief_stream_length", stream=EVENTS_STREAM) >= 1
    assert value(after, "relief_stream_group_lag", stream=EVENTS_STREAM, group="intake") == 0
    assert value(after, "relief_stream_group_pending", stream=EVENTS_STREAM, group="intake") == 0

    checked = await scrape(verification)
    assert value(checked, "relief_stream_length", stream=route) >= 1
    assert (
        value(checked, "relief_stream_group_pending", stream=route, group=VERIFICATION_GROUP) == 0
    )
    assert value(checked, "relief_stream_group_lag", stream=route, group=VERIFICATION_GROUP) == 0
    assert value(checked, "relief_outbox_backlog", service="verification") == 0.0
    assert value(checked, "relief_dead_letters") == 0.0

    watched = await scrape(notify)
    assert value(watched, "relief_stream_group_lag", stream=EVENTS_STREAM, group="notify") == 0
    assert not [s for s in watched if s.name == "relief_outbox_backlog"]  # notify has none

    for samples in (before, after, checked, watched):
        raw = [(s.name, v) for s in samples for v in s.labels.values() if UUID.search(v)]
        assert raw == []


async def test_an_unreadable_message_is_lag_then_a_dead_letter(
    verification: httpx.AsyncClient, redis: Redis, pipeline: Pipeline
) -> None:
    stream = route_stream("medins")
    await redis.xadd(stream, {"not-an-envelope": "x"})

    waiting = await scrape(verification)
    # Redis 6.2 has no XINFO lag: counted as the entries after last-delivered-id.
    assert value(waiting, "relief_stream_group_lag", stream=stream, group=VERIFICATION_GROUP) == 1
    assert value(waiting, "relief_dead_letters") == 0

    await pipeline.drain()
    dead = await scrape(verification)
    assert value(dead, "relief_dead_letters") == 1
    assert value(dead, "relief_stream_group_lag", stream=stream, group=VERIFICATION_GROUP) == 0
    assert value(dead, "relief_stream_group_pending", stream=stream, group=VERIFICATION_GROUP) == 0


async def test_metrics_answer_while_redis_and_the_database_are_down(infra: Infra) -> None:
    with closed_port() as port:
        notify_app = create_notify(NotifySettings(redis_url=f"redis://127.0.0.1:{port}/0"))
        async with running(notify_app) as notify:
            assert (await notify.get("/healthz")).status_code == 200
            samples = await scrape(notify)
        assert value(samples, "relief_http_requests_total", route="/healthz", status="200") == 1
        assert math.isnan(value(samples, "relief_dead_letters"))
        assert math.isnan(value(samples, "relief_stream_length", stream=EVENTS_STREAM))
        assert math.isnan(
            value(samples, "relief_stream_group_lag", stream=EVENTS_STREAM, group="notify")
        )

        intake_app = create_intake(
            IntakeSettings(
                redis_url=f"redis://127.0.0.1:{port}/0",
                RELIEF_INTAKE_DATABASE_URL=f"postgresql://relief@127.0.0.1:{port}/relief",
            )
        )
        async with running(intake_app) as intake:
            samples = await scrape(intake)
        assert math.isnan(value(samples, "relief_outbox_backlog", service="intake"))


async def test_a_service_adds_its_own_gauges_and_a_failing_hook_is_skipped(infra: Infra) -> None:
    app = create_notify(NotifySettings())
    closure = app.state.metrics.gauge("relief_test_closure_rate", "Test gauge.", ["department"])

    async def refresh_closure(app: FastAPI) -> None:
        closure.labels("medins").set(99.21)

    async def broken(app: FastAPI) -> None:
        raise RuntimeError("this hook fails on purpose")

    app.state.metrics.add_hook(broken)
    app.state.metrics.add_hook(refresh_closure)
    assert app.state.metrics.gauge("relief_test_closure_rate", "Again.", ["department"]) is closure
    async with running(app) as notify:
        samples = await scrape(notify)
        schema = (await notify.get("/openapi.json")).json()
    assert value(samples, "relief_test_closure_rate", department="medins") == 99.21
    assert value(samples, "relief_dead_letters") == 0
    assert "/metrics" not in schema["paths"]
