"""What every service's FastAPI app has: error handlers, the correlation id, health checks,
Prometheus metrics, and the database and Redis clients on `app.state`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import create_engine, create_sessionmaker, database_ready
from shared.errors import error_body, install_error_handlers
from shared.logging import configure_logging, correlation_id, new_correlation_id
from shared.metrics import MetricsSpec, PrometheusMiddleware, ServiceMetrics
from shared.redis import create_redis
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class CorrelationIdMiddleware:
    """Takes the caller's X-Request-ID (or makes one) and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode())
        cid = incoming.decode("latin-1")[:64] if incoming else new_correlation_id()
        token = correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].append((REQUEST_ID_HEADER.encode(), cid.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """413 for bodies over the limit: at once by Content-Length, or as soon as a chunked
    body passes it, so an oversized upload is never spooled to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        response = JSONResponse(error_body("payload_too_large", "提交的内容过大"), status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def create_service_app(
    *,
    name: str,
    title: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    extra_lifespan: Lifespan | None = None,
    description: str = "",
    metrics: MetricsSpec | None = None,
) -> FastAPI:
    """`metrics` names the consumer group, streams and outbox /metrics reports on; a service
    adds gauges of its own through `app.state.metrics` (`gauge()`, `add_hook()`)."""
    configure_logging(
        service=name,
        json=settings.log_json if settings.log_json is not None else not settings.is_dev,
        level=settings.log_level,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings, application_name=f"relief-{name}")
        redis = create_redis(settings.require_redis_url())
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.redis = redis
        try:
            if extra_lifespan is not None:
                async with extra_lifespan(app):
                    yield
            else:
                yield
        finally:
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(CorrelationIdMiddleware)
    # Outermost of ours: it also counts the 413s above and times the whole request.
    service_metrics = ServiceMetrics(name, metrics or MetricsSpec())
    app.state.metrics = service_metrics
    app.add_middleware(PrometheusMiddleware, metrics=service_metrics)
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"], summary="Process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["health"], summary="Database and Redis reachable")
    async def readyz() -> Any:
        db_ok = await database_ready(app.state.engine)
        try:
            redis_ok = bool(await app.state.redis.ping())
        except Exception:
            redis_ok = False
        checks = {"database": db_ok, "redis": redis_ok}
        if db_ok and redis_ok:
            return {"status": "ready", "service": name, "checks": checks}
        body = error_body("not_ready", "服务暂不可用，请稍后再试", checks)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        await service_metrics.refresh(app)
        return Response(
            service_metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    for router in routers:
        app.include_router(router, prefix="/api/v1")
    return app
