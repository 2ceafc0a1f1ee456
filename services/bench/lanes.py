"""HTTP for `relief replay`: bounded concurrency over kept-alive connections, cheap on CPU
(the replay shares the machine with the services it drives)."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import httpx

# Answers that mean "not now, come back": the service sheds load (503 + Retry-After), a
# proxy or a restarting process.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 8


class ReplayError(RuntimeError):
    pass


class Lanes:
    """Requests to the three services, at most `concurrency` in flight, each on a
    kept-alive connection; load shedding (503 + Retry-After) and lost connections are
    retried with backoff. Counts requests and their latency by endpoint name.

    One small client per lane rather than one client with a big pool: httpcore scans every
    connection of its pool on each request, which costs more CPU than the request itself
    once the pool holds a few dozen (measured: 2.0 → 0.9 ms of CPU per request at 24)."""

    def __init__(self, concurrency: int) -> None:
        _fail_fast_without_sniffio()
        self._lanes: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        # Plain HTTP on loopback, yet each client would load the CA bundle (25 ms of CPU).
        tls = ssl.create_default_context()
        for _ in range(concurrency):
            self._lanes.put_nowait(
                httpx.AsyncClient(
                    # one kept-alive connection per service
                    limits=httpx.Limits(max_connections=3, max_keepalive_connections=3),
                    timeout=httpx.Timeout(60.0),
                    verify=tls,
                    trust_env=False,
                )
            )
        self.requests: Counter[str] = Counter()
        self.retries = 0
        self._latencies: dict[str, list[float]] = defaultdict(list)

    async def aclose(self) -> None:
        while not self._lanes.empty():
            await self._lanes.get_nowait().aclose()

    async def call(
        self, method: str, url: str, *, name: str, token: str, **kwargs: Any
    ) -> httpx.Response:
        """The answer, whatever its status, except one of RETRY_STATUSES (retried)."""
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        problem = ""
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                self.retries += 1
            self.requests[name] += 1
            client = await self._lanes.get()
            sent = time.perf_counter()
            try:
                response = await client.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                response, problem = None, f"{type(exc).__name__}: {exc}"
            finally:
                self._lanes.put_nowait(client)
            self._latencies[name].append(time.perf_counter() - sent)
            if response is not None and response.status_code not in RETRY_STATUSES:
                return response
            if response is not None:
                problem = f"HTTP {response.status_code}"
            await asyncio.sleep(_backoff(response, attempt))
        raise ReplayError(f"{method} {name} failed {MAX_ATTEMPTS} times: {problem}")

    def latency_ms(self) -> dict[str, dict[str, float]]:
        """p50, p95 and max of each endpoint's answers, in milliseconds."""
        found = {}
        for name, seconds in sorted(self._latencies.items()):
            ordered = sorted(seconds)
            found[name] = {
                "p50": round(ordered[len(ordered) // 2] * 1000, 1),
                "p95": round(ordered[int(len(ordered) * 0.95)] * 1000, 1),
                "max": round(ordered[-1] * 1000, 1),
            }
        return found


def _fail_fast_without_sniffio() -> None:
    """httpcore tries `import sniffio` for every lock it makes (about four a request). It
    is not installed here, and a failed import searches sys.path anew each time: a fifth of
    the replay's CPU. None in sys.modules makes that import fail at once, same outcome
    (httpcore then assumes asyncio, which it is)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _backoff(response: httpx.Response | None, attempt: int) -> float:
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after is not None and retry_after.isdigit():
        return min(float(retry_after), 5.0)
    return float(min(0.1 * 2**attempt, 5.0))
