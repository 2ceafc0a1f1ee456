"""Prometheus metrics of one service: HTTP requests, and the queue seen from that service.

Each app has its own `CollectorRegistry` (several apps live in one test process, and a
service's numbers must never mix with another's). Request metrics are counted by a pure
ASGI middleware; queue gauges are read from Redis and PostgreSQL when /metrics is scraped,
each read bounded in time, so a scrape still answers (with NaN for what could not be read)
while Redis or the database is down.

Stream lag on Redis < 7: XINFO GROUPS has no `lag` field there (6.2 answers only name,
consumers, pending and last-delivered-id), so lag is counted as the entries after the
group's last-delivered-id with XRANGE, up to `LAG_SCAN_LIMIT`; a lag at the limit means
"at least that many". Redis 7 answers `lag` itself; when it cannot (nil, after XDEL) the
same count is used.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import fastapi.routing
import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.asyncio import Redis
from sqlalchemy import column, func, select, table
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.events import DEAD_LETTER_STREAM

log = structlog.get_logger(__name__)

MetricsHook = Callable[[FastAPI], Awaitable[None]]
"""Refreshes a service's own gauges before a scrape; it gets the app (its clients and
`app.state.metrics`). A hook that fails or overruns is logged and the scrape goes on."""

UNMATCHED_ROUTE = "unmatched"
# Entries read per stream to count a group's lag on Redis < 7 (each carries its envelope).
LAG_SCAN_LIMIT = 1000
# An API answers in milliseconds; seconds are already an incident.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Any other method string a client sends would be a new label value each time.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class MetricsSpec:
    """What a service consumes and owns, so /metrics can show its queue."""

    group: str | None = None
    streams: Sequence[str] = ()
    outbox_schema: str | None = None
    hooks: Sequence[MetricsHook] = ()


class ServiceMetrics:
    """The registry of one app (on `app.state.metrics`) and everything registered on it."""

    def __init__(self, service: str, spec: MetricsSpec, *, refresh_timeout: float = 2.0) -> None:
        self.service = service
        self.spec = spec
        self.refresh_timeout = refresh_timeout
        self.registry = CollectorRegistry()
        self._hooks: list[MetricsHook] = list(spec.hooks)
        self._gauges: dict[str, tuple[Gauge, tuple[str, ...]]] = {}
        registry = self.registry
        self.http_requests = Counter(
            "relief_http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "relief_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["service", "method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.http_in_flight = Gauge(
            "relief_http_requests_in_flight",
            "Requests admitted and not yet answered (health, readiness and /metrics excepted).",
            ["service"],
            registry=registry,
        ).labels(service)
        self.http_waiting = Gauge(
            "relief_http_requests_waiting",
            "Requests waiting for an in-flight slot (past the limit, before admission or 503).",
            ["service"],
            registry=registry,
        ).labels(service)
        self.http_shed = Counter(
            "relief_http_shed_total",
            "Requests refused with 503 because the process had too many in flight.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.stream_length = self.gauge(
            "relief_stream_length", "Entries in a stream this service consumes (XLEN).", ["stream"]
        )
        self.group_lag = self.gauge(
            "relief_stream_group_lag",
            "Entries not yet delivered to the consumer group (NaN: unknown or no group yet).",
            ["stream", "group"],
        )
        self.group_pending = self.gauge(
            "relief_stream_group_pending",
            "Entries delivered to the group but not acknowledged.",
            ["stream", "group"],
        )
        self.dead_letters = self.gauge(
            "relief_dead_letters", f"Messages in the dead-letter stream {DEAD_LETTER_STREAM}."
        )
        self.outbox_backlog = self.gauge(
            "relief_outbox_backlog", "Outbox rows not yet published to Redis.", ["service"]
        )
        # Label children per (method, route, status): skips labels()' lock on every request.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge on this app's registry; asking again for the same name returns it."""
        if name in self._gauges:
            existing, labelnames = self._gauges[name]
            if labelnames != tuple(labels):
                raise ValueError(f"gauge {name} exists with the labels {labelnames}")
            return existing
        created = Gauge(name, documentation, list(labels), registry=self.registry)
        self._gauges[name] = (created, tuple(labels))
        return created

    def add_hook(self, hook: MetricsHook) -> None:
        self._hooks.append(hook)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(self.service, method, route, str(status)),
                self.http_duration.labels(self.service, method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def refresh(self, app: FastAPI) -> None:
        """Read the gauges anew; never raises, whatever is down."""
        redis: Redis | None = getattr(app.state, "redis", None)
        engine: AsyncEngine | None = getattr(app.state, "engine", None)
        parts = [
            self._bounded("streams", lambda: self._read_streams(redis), self._unknown_streams),
            *(
                self._bounded(getattr(hook, "__name__", "hook"), partial(hook, app))
                for hook in self._hooks
            ),
        ]
        if (schema := self.spec.outbox_schema) is not None:
            parts.append(
                self._bounded(
                    "outbox", lambda: self._read_outbox(engine, schema), self._unknown_outbox
                )
            )
        await asyncio.gather(*parts)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def _bounded(
        self,
        part: str,
        read: Callable[[], Awaitable[None]],
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        try:
            async with asyncio.timeout(self.refresh_timeout):
                await read()
        except Exception as exc:  # a scrape reports what it can; the rest is NaN
            log.warning("metrics_refresh_failed", part=part, error=repr(exc))
            if on_failure is not None:
                on_failure()

    async def _read_streams(self, redis: Redis | None) -> None:
        if redis is None:
            raise RuntimeError("no Redis client (app not started)")
        streams, group = list(self.spec.streams), self.spec.group
        pipe = redis.pipeline(transaction=False)
        pipe.xlen(DEAD_LETTER_STREAM)
        for stream in streams:
            pipe.xlen(stream)
            if group is not None:
                pipe.xinfo_groups(stream)
        # A stream nobody wrote to yet answers XINFO GROUPS with an error: keep the others.
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):
            raise replies[0]
        self.dead_letters.set(replies[0])
        step = 1 if group is None else 2
        for i, stream in enumerate(streams):
            length = replies[1 + i * step]
            if isinstance(length, Exception):
                raise length
            self.stream_length.labels(stream).set(length)
            if group is not None:
                pending, lag = await _group_backlog(redis, stream, group, replies[2 + i * step])
                self.group_pending.labels(stream, group).set(pending)
                self.group_lag.labels(stream, group).set(lag)

    def _unknown_streams(self) -> None:
        self.dead_letters.set(math.nan)
        for stream in self.spec.streams:
            self.stream_length.labels(stream).set(math.nan)
            if self.spec.group is not None:
                self.group_pending.labels(stream, self.spec.group).set(math.nan)
                self.group_lag.labels(stream, self.spec.group).set(math.nan)

    async def _read_outbox(self, engine: AsyncEngine | None, schema: str) -> None:
        if engine is None:
            raise RuntimeError("no database engine (app not started)")
        outbox = table("outbox", column("published_at"), schema=schema)
        async with engine.connect() as conn:
            backlog = await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )
        self.outbox_backlog.labels(self.service).set(backlog or 0)

    def _unknown_outbox(self) -> None:
        self.outbox_backlog.labels(self.service).set(math.nan)


async def _group_backlog(redis: Redis, stream: str, group: str, info: Any) -> tuple[float, float]:
    """(pending, lag) of `group` on `stream` from its XINFO GROUPS reply."""
    if isinstance(info, Exception):  # no such stream yet: nothing can be known of the group
        return math.nan, math.nan
    found = next((g for g in info if g.get("name") == group), None)
    if found is None:
        return math.nan, math.nan
    lag = found.get("lag")  # Redis >= 7; nil when it cannot tell
    if lag is None:
        # decode_responses=True: entries come back as (str id, fields).
        after: Any = await redis.xrange(
            stream, min=f"({found['last-delivered-id']}", count=LAG_SCAN_LIMIT
        )
        lag = len(after)
    return float(found["pending"]), float(lag)


class PrometheusMiddleware:
    """Counts and times every HTTP request by route template, never by raw path.

    The template comes from the route the router matched (`scope["route"]`, or the endpoint
    for plain Starlette routes), mapped to its full path through the app's route contexts
    once per route; a request no route matched is `unmatched` — a 404, a slash redirect, or
    a 413 refused before routing.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"]
            self.metrics.observe_request(
                method if method in _METHODS else "OTHER",
                self._route_template(scope),
                status,
                time.perf_counter() - started,
            )

    def _route_template(self, scope: Scope) -> str:
        matched = scope.get("route") or scope.get("endpoint")
        if matched is None:
            return UNMATCHED_ROUTE
        key = id(matched)
        template = self._templates.get(key)
        if template is None:
            # First request of this route: learn every template (routes may have been added
            # after the middleware was built). Route objects live as long as the app.
            known = _route_templates(getattr(scope.get("app"), "routes", ()))
            known.update(self._templates)
            template = known.setdefault(
                key, getattr(matched, "path_format", None) or UNMATCHED_ROUTE
            )
            self._templates = known
        return template


def _route_templates(routes: Iterable[Any]) -> dict[int, str]:
    """id(route) and id(endpoint) -> full path template, e.g. `/api/v1/cases/{case_id}`.

    FastAPI >= 0.16x keeps an included router's routes with their own short paths, so the
    full template comes from `iter_route_contexts`; older versions copy the routes with
    full paths. A route or endpoint reachable under two templates is left out (ambiguous).
    """
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    pairs: list[tuple[Any, str | None]] = (
        [(c.original_route, c.path_format) for c in iter_contexts(list(routes))]
        if iter_contexts is not None
        else [(r, getattr(r, "path_format", None)) for r in routes]
    )
    found: dict[int, str] = {}
    ambiguous: set[int] = set()
    for route, template in pairs:
        if template is None:
            continue
        for key in (id(route), id(getattr(route, "endpoint", None))):
            if found.setdefault(key, template) != template:
                ambiguous.add(key)
    found.pop(id(None), None)
    for key in ambiguous:
        del found[key]
    return found
