"""HTTP for `relief replay`: bounded concurrency over kept-alive connections, cheap on CPU
(the replay shares the machine with the services it drives)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

# Answers that mean "not now, come back": the service sheds load (503 + Retry-After), a
# proxy or a restarting process.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 8


class ReplayError(RuntimeError):
    pass


@dataclass(frozen=True)
class Answer:
    """A service's answer, read whole."""

    status_code: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Lanes:
    """Requests to the three services, at most `concurrency` in flight, over kept-alive
    connections; load shedding (503 + Retry-After) and lost connections are retried with
    backoff. Counts requests and their latency by endpoint name.

    aiohttp, not httpx: the replay shares two cores with the services it drives, and its
    client's CPU is taken from them. Measured against a local uvicorn, 6,000 POSTs at 24 in
    flight: ~735 us of client CPU per request with httpx (even with a small client per
    lane), ~138 us with aiohttp (its HTTP parser is compiled)."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        # Lanes as a queue, not a semaphore: a task whose answer just came back takes a
        # free lane at once, ahead of those woken to wait for one. So the citizens, each
        # submitting the next application straight away, keep their lanes while clerks wait
        # for theirs, as the replay did before (a fair semaphore gave every request the same
        # turn: submissions took 143 s instead of 25-39 s at scale 0.01, and every worker's
        # batches shrank).
        self._lanes: asyncio.Queue[int] = asyncio.Queue()
        for lane in range(concurrency):
            self._lanes.put_nowait(lane)
        self._session: aiohttp.ClientSession | None = None
        self.requests: Counter[str] = Counter()
        self.retries = 0
        self._latencies: dict[str, list[float]] = defaultdict(list)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the running loop, on first use
            self._session = aiohttp.ClientSession(
                # one kept-alive connection per request in flight and service
                connector=aiohttp.TCPConnector(limit=3 * self._concurrency),
                timeout=aiohttp.ClientTimeout(total=60.0),
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, url: str, *, name: str, token: str, **kwargs: Any) -> Answer:
        """The answer, whatever its status, except one of RETRY_STATUSES (retried).
        `kwargs` as aiohttp takes them (json=, params=, headers=)."""
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        problem = ""
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                self.retries += 1
            self.requests[name] += 1
            answer: Answer | None = None
            lane = await self._lanes.get()
            sent = time.perf_counter()
            try:
                async with self._client().request(
                    method, url, headers=headers, **kwargs
                ) as response:
                    body = await response.read()
                    answer = Answer(response.status, body, response.headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                self._lanes.put_nowait(lane)
            self._latencies[name].append(time.perf_counter() - sent)
            if answer is not None and answer.status_code not in RETRY_STATUSES:
                return answer
            if answer is not None:
                problem = f"HTTP {answer.status_code}"
            await asyncio.sleep(_backoff(answer, attempt))
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


def _backoff(response: Answer | None, attempt: int) -> float:
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after is not None and retry_after.isdigit():
        return min(float(retry_after), 5.0)
    return float(min(0.1 * 2**attempt, 5.0))
