"""What every service's FastAPI app has: error handlers, the correlation id, health checks,
Prometheus metrics, a bound on the requests in flight, and the database and Redis clients on
`app.state`."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import autocommit_engine, create_engine, create_sessionmaker, database_ready
from shared.errors import error_body, install_error_handlers
from shared.logging import configure_logging, correlation_id, new_correlation_id
from shared.metrics import MetricsSpec, PrometheusMiddleware, ServiceMetrics
from shared.redis import create_redis
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# FastAPI's native OpenTelemetry, off: this platform reports through Prometheus (/metrics)
# and its logs, and with it on every request asked OpenTelemetry for its providers (~3% of
# a clerk action's CPU) only to find none configured.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

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
        await _send_error(send, 413, "payload_too_large", "提交的内容过大")


# Never shed: an orchestrator that cannot reach these under load would restart a process
# that is merely busy, and Prometheus would lose sight of the overload it should show.
UNSHED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
OVERLOADED_RETRY_AFTER_SECONDS = 1
# How long a request that finds the waiting line full is held before its 503, whatever the
# admission wait: see AdmissionControlMiddleware._admit. Below the Retry-After it is
# answered with, so a client that obeys that loses nothing by it.
FULL_LINE_DELAY_SECONDS = 0.5
_SHED_LOG_INTERVAL_SECONDS = 10.0


class AdmissionControlMiddleware:
    """Bounds the requests one process works on at once, so that past capacity clients get
    a quick 503 + Retry-After instead of queueing in front of the database pool until they
    time out.

    Up to `max_inflight` requests run. Up to `max_waiting` more (default: as many again)
    wait, first come first served, at most `wait_seconds` for one of them to finish; a
    finishing request hands its slot straight to the longest waiter. A request whose wait
    runs out, or that finds the waiting line full (it is answered after
    `FULL_LINE_DELAY_SECONDS`, so that clients retrying at once cannot burn the CPU on
    refusals), is refused with `overloaded`. The slot is held until the response has been
    sent in full. Per process: with several uvicorn workers each has its own limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_inflight: int,
        wait_seconds: float,
        metrics: ServiceMetrics,
        max_waiting: int | None = None,
        unshed_paths: frozenset[str] = UNSHED_PATHS,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self.app = app
        self.max_inflight = max_inflight
        self.max_waiting = max_inflight if max_waiting is None else max_waiting
        self.wait_seconds = wait_seconds
        self.metrics = metrics
        self.unshed_paths = unshed_paths
        self._in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._shed_since_log = 0
        self._last_shed_log = -_SHED_LOG_INTERVAL_SECONDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.unshed_paths:
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            self._count_shed()
            await _send_error(
                send,
                503,
                "overloaded",
                "系统繁忙，请稍后再试",
                {"Retry-After": str(OVERLOADED_RETRY_AFTER_SECONDS)},
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _admit(self) -> bool:
        if self._in_flight < self.max_inflight and not self._waiting:
            self._in_flight += 1
            self.metrics.http_in_flight.inc()
            return True
        if self.wait_seconds <= 0:
            return False
        if len(self._waiting) >= self.max_waiting:
            # The line is full: answer after a short delay rather than at once. It costs
            # no CPU, and a client that ignores Retry-After and asks again at once (a load
            # generator, a retry loop) is slowed to two refusals a second instead of
            # thousands, which would take the CPU from the requests being served. Measured
            # (wrk, 512 connections, 15 s runs, 2 cores): held for the 200 ms admission
            # wait, ~21,000 refusals and 2,399-2,575 answered submissions a run (four
            # runs); held 0.5 s, ~11,300 refusals and 2,683-2,970 answered (two runs).
            await asyncio.sleep(FULL_LINE_DELAY_SECONDS)
            return False
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        self.metrics.http_waiting.inc()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await slot
        except TimeoutError:
            pass  # the slot may still have been handed over just as the wait ran out
        except BaseException:
            if slot.done() and not slot.cancelled():
                self._release()  # cancelled after a slot was handed over: pass it on
            raise
        finally:
            self.metrics.http_waiting.dec()
            if not slot.done() or slot.cancelled():
                # Timed out or cancelled: leave the line (a handed-over slot already left).
                slot.cancel()
                if slot in self._waiting:
                    self._waiting.remove(slot)
        return slot.done() and not slot.cancelled()

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in flight stays the same
                return
        self._in_flight -= 1
        self.metrics.http_in_flight.dec()

    def _count_shed(self) -> None:
        self.metrics.http_shed.inc()
        # One line per interval, not one per refused request, which would flood the log
        # exactly when the process is short of time.
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_shed_log >= _SHED_LOG_INTERVAL_SECONDS:
            log.warning(
                "requests_shed",
                shed=self._shed_since_log,
                in_flight=self._in_flight,
                waiting=len(self._waiting),
                max_inflight=self.max_inflight,
            )
            self._shed_since_log = 0
            self._last_shed_log = now


async def _send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """An error in the shape of `shared.errors`, answered by a middleware before routing."""
    response = JSONResponse(error_body(code, message), status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
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
    """`routers`, mounted under /api/v1, the busiest first (and in each router the busiest
    routes first): every request tries the routes in order. `metrics` names the consumer
    group, streams and outbox /metrics reports on; a service adds gauges of its own through
    `app.state.metrics` (`gauge()`, `add_hook()`)."""
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
        app.state.autocommit_engine = autocommit_engine(engine)
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
        telemetry=NO_OPENTELEMETRY,
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    service_metrics = ServiceMetrics(name, metrics or MetricsSpec())
    app.state.metrics = service_metrics
    # Each add_middleware wraps the ones before it: the last added runs first.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        AdmissionControlMiddleware,
        max_inflight=settings.max_inflight_requests,
        wait_seconds=settings.admission_wait_ms / 1000,
        metrics=service_metrics,
    )
    # Outside admission control, so a refused request still carries its X-Request-ID.
    app.add_middleware(CorrelationIdMiddleware)
    # Outermost of ours: it also counts the 413s and 503s above and times the whole request.
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

    # A request is matched against the routes in order (an included router's routes
    # twice: once to choose the router, once to choose the route), so the API's routers,
    # in the order given (the busiest first), go before the docs and health routes.
    own_routes = len(app.router.routes)
    for router in routers:
        app.include_router(router, prefix="/api/v1")
    app.router.routes[:] = app.router.routes[own_routes:] + app.router.routes[:own_routes]
    return app
