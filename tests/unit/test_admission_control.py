"""The admission line of `AdmissionControlMiddleware`: arrival order, waiters that give up,
and a slot handed to a request that is cancelled in the same moment. The middleware wraps a
small ASGI app whose requests are held on events, driven by plain ASGI calls."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from shared.metrics import MetricsSpec, ServiceMetrics
from shared.web import FULL_LINE_DELAY_SECONDS, AdmissionControlMiddleware

QUICK = 5.0


class HeldApp:
    """Answers 200 to /<name> once `release(name)` is called; records who got in, in order."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self._events: dict[str, asyncio.Event] = {}

    def event(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        self.event(name).set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path"].lstrip("/")
        self.entered.append(name)
        await self.event(name).wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def middleware(
    app: HeldApp, *, max_inflight: int = 1, max_waiting: int = 3, wait_seconds: float = 30
) -> tuple[AdmissionControlMiddleware, ServiceMetrics]:
    metrics = ServiceMetrics("unit", MetricsSpec())
    wrapped = AdmissionControlMiddleware(
        app,
        max_inflight=max_inflight,
        max_waiting=max_waiting,
        wait_seconds=wait_seconds,
        metrics=metrics,
    )
    return wrapped, metrics


async def request(asgi: AdmissionControlMiddleware, name: str) -> int:
    """The status the middleware answers for GET /<name>."""
    scope = {"type": "http", "method": "GET", "path": f"/{name}", "headers": []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def sample(metrics: ServiceMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"service": "unit"})


async def until_waiting(metrics: ServiceMetrics, count: int) -> None:
    async with asyncio.timeout(QUICK):
        while sample(metrics, "relief_http_requests_waiting") != count:  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_slots_pass_to_waiters_in_arrival_order() -> None:
    app = HeldApp()
    asgi, metrics = middleware(app)
    first = asyncio.create_task(request(asgi, "a"))
    await asyncio.sleep(0)
    waiters: list[asyncio.Task[int]] = []
    for n, name in enumerate(("b", "c", "d"), start=1):
        waiters.append(asyncio.create_task(request(asgi, name)))
        await until_waiting(metrics, n)
    # The line is full (three): the next one is refused after a short delay, not its wait.
    async with asyncio.timeout(QUICK):
        assert await request(asgi, "e") == 503
    assert app.entered == ["a"]

    async with asyncio.timeout(QUICK):
        for name, task in zip(("a", "b", "c", "d"), [first, *waiters], strict=True):
            app.release(name)
            assert await task == 200
    assert app.entered == ["a", "b", "c", "d"]
    assert sample(metrics, "relief_http_requests_in_flight") == 0
    assert sample(metrics, "relief_http_requests_waiting") == 0
    assert sample(metrics, "relief_http_shed_total") == 1


async def test_a_waiter_that_gives_up_leaves_the_line() -> None:
    app = HeldApp()
    asgi, metrics = middleware(app, max_waiting=1)
    first = asyncio.create_task(request(asgi, "a"))
    await asyncio.sleep(0)
    gave_up = asyncio.create_task(request(asgi, "b"))
    await until_waiting(metrics, 1)
    gave_up.cancel()
    await until_waiting(metrics, 0)

    # Its place in the line is free again, and the slot goes to whoever waits now.
    later = asyncio.create_task(request(asgi, "c"))
    await until_waiting(metrics, 1)
    app.release("a")
    app.release("c")
    async with asyncio.timeout(QUICK):
        assert await first == 200
        assert await later == 200
    assert app.entered == ["a", "c"]
    assert sample(metrics, "relief_http_requests_in_flight") == 0
    assert sample(metrics, "relief_http_shed_total") == 0


async def test_a_slot_handed_to_a_request_cancelled_at_that_moment_passes_on() -> None:
    app = HeldApp()
    asgi, metrics = middleware(app)
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def first_then_cancel_the_next() -> int:
        status = await request(asgi, "a")
        # "a" has just handed its slot to "b", whose task has not run since: cancel it now.
        tasks["b"].cancel()
        return status

    tasks["a"] = asyncio.create_task(first_then_cancel_the_next())
    await asyncio.sleep(0)
    tasks["b"] = asyncio.create_task(request(asgi, "b"))
    await until_waiting(metrics, 1)
    tasks["c"] = asyncio.create_task(request(asgi, "c"))
    await until_waiting(metrics, 2)

    app.release("a")
    app.release("c")
    async with asyncio.timeout(QUICK):
        assert await tasks["a"] == 200
        assert await tasks["c"] == 200
    assert tasks["b"].cancelled()
    assert app.entered == ["a", "c"]
    assert sample(metrics, "relief_http_requests_in_flight") == 0
    assert sample(metrics, "relief_http_requests_waiting") == 0


async def test_with_no_wait_the_excess_is_refused_at_once() -> None:
    app = HeldApp()
    asgi, metrics = middleware(app, wait_seconds=0)
    first = asyncio.create_task(request(asgi, "a"))
    await asyncio.sleep(0)
    async with asyncio.timeout(QUICK):
        assert await request(asgi, "b") == 503
    app.release("a")
    async with asyncio.timeout(QUICK):
        assert await first == 200
    assert app.entered == ["a"]
    assert sample(metrics, "relief_http_shed_total") == 1


async def test_a_full_line_is_refused_after_a_short_delay_that_slows_retry_storms() -> None:
    app = HeldApp()
    asgi, metrics = middleware(app, max_waiting=0, wait_seconds=0.3)
    first = asyncio.create_task(request(asgi, "a"))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(QUICK):
        refused = await asyncio.gather(*(request(asgi, f"x{n}") for n in range(20)))
    # Held, not worked on: twenty refusals at once all took the delay (a sleep never ends
    # early), side by side rather than one after another.
    assert refused == [503] * 20
    assert loop.time() - started >= FULL_LINE_DELAY_SECONDS
    assert app.entered == ["a"]
    app.release("a")
    async with asyncio.timeout(QUICK):
        assert await first == 200
    assert sample(metrics, "relief_http_shed_total") == 20
