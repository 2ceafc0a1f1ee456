"""The services report through Prometheus and their logs: FastAPI's native OpenTelemetry
stays off even where a tracer provider is installed in the process."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import trace

from shared.settings import ServiceSettings
from shared.web import create_service_app


class RecordingTracer(trace.NoOpTracer):
    def __init__(self) -> None:
        self.started: list[str] = []

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> trace.Span:
        self.started.append(name)
        return super().start_span(name, *args, **kwargs)


class RecordingProvider(trace.TracerProvider):
    def __init__(self) -> None:
        self.tracer = RecordingTracer()

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self.tracer


async def _get(app: FastAPI, path: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as client:
        return (await client.get(path)).status_code


async def test_no_request_starts_an_opentelemetry_span() -> None:
    provider = RecordingProvider()
    trace.set_tracer_provider(provider)  # once per process; no other test sets one

    plain = FastAPI()

    @plain.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    assert await _get(plain, "/healthz") == 200
    assert provider.tracer.started, "FastAPI's default traces with a provider installed"

    provider.tracer.started.clear()
    ours = create_service_app(
        name="unit", title="unit", settings=ServiceSettings(env="dev"), routers=[]
    )
    assert await _get(ours, "/healthz") == 200
    assert provider.tracer.started == []
