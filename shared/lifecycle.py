"""Long-running processes: stop on SIGTERM/SIGINT, sleep without missing a stop, collect
garbage less often."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT so loops finish their current message and exit."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# Python collects its youngest generation every 700 allocations net of frees: many times
# per request through FastAPI, SQLAlchemy and pydantic, and each older-generation pass
# walks every object the process has, its modules, routes and compiled statements included.
# After startup those are frozen out of the collector's sight and it runs less often.
# Measured (wrk, 32 connections, 15 s, held platform, two rounds of three alternated):
# intake submissions 457 → 480 per second, p99 292 → 173 ms (means of six runs).
# The cost: up to 50,000 objects of garbage in cycles wait longer to be freed.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """For a service process once it has started: freeze what startup built, collect less
    often. A process's own setting; not for a process that runs tests."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
