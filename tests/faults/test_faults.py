"""Break things on purpose while citizens submit and clerks decide, then reconcile:
applications received = cases opened (once each) = applications counted by notify, and every
decision seen by the citizen. Processes are started and killed for real."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis

from tests.faults.harness import (
    LoadFigures,
    Platform,
    assert_nothing_lost_or_doubled,
    platform,
    record_figures,
    run_load,
    settle,
)

pytestmark = pytest.mark.faults


def _no_personal_data_leaked(system: Platform, figures: LoadFigures) -> None:
    """No ID number or phone in any process's log or in any stream entry left in Redis."""
    logs = system.logs()
    client = SyncRedis.from_url(system.redis_url, decode_responses=True)
    entries: list[Any] = []
    for key in client.scan_iter("relief:*"):
        if client.type(key) == "stream":
            entries.extend(client.xrange(key))  # type: ignore[arg-type]
    streams = "\n".join(str(fields) for _, fields in entries)
    for id_number, phone in figures.identities:
        assert id_number not in logs and phone not in logs
        assert id_number not in streams and phone not in streams


async def _during_load(system: Platform, seconds: float, fault: object) -> LoadFigures:
    load = asyncio.create_task(run_load(system, seconds=seconds))
    await fault  # type: ignore[misc]
    return await load


async def test_verification_worker_killed_mid_batch(server_home: Path) -> None:
    async with platform(server_home) as system:

        async def kill_worker() -> None:
            await asyncio.sleep(4)
            system.processes["verification-worker-1"].kill()  # SIGKILL: no goodbye
            await asyncio.sleep(6)
            system.processes["verification-worker-1"].start()

        figures = await _during_load(system, 14, kill_worker())
        result = await settle(system, figures)
        record_figures("verification_worker_sigkill", figures, result)
        assert_nothing_lost_or_doubled(figures, result)
        _no_personal_data_leaked(system, figures)


async def test_redis_restarted_with_its_data_gone(server_home: Path) -> None:
    async with platform(server_home) as system:

        async def wipe_redis() -> None:
            await asyncio.sleep(5)
            system.redis.stop()
            for leftover in system.redis.root.glob("appendonly*"):
                if leftover.is_dir():
                    for part in leftover.iterdir():
                        part.unlink()
                    leftover.rmdir()
                else:
                    leftover.unlink()
            for leftover in system.redis.root.glob("*.rdb"):
                leftover.unlink()
            await asyncio.sleep(1)
            system.redis.start()  # same port, empty

        figures = await _during_load(system, 14, wipe_redis())
        result = await settle(system, figures, within=120)
        record_figures("redis_restarted_empty", figures, result)
        assert_nothing_lost_or_doubled(figures, result)


async def test_postgres_stopped_and_started_mid_run(server_home: Path) -> None:
    async with platform(server_home) as system:
        during_outage: dict[int, int] = {}

        async def outage() -> None:
            await asyncio.sleep(4)
            system.postgres.stop()
            async with httpx.AsyncClient(timeout=5) as client:
                for _ in range(5):
                    for service in ("intake", "verification", "notify"):
                        ready = await client.get(f"{system.url(service)}/readyz")
                        during_outage[ready.status_code] = (
                            during_outage.get(ready.status_code, 0) + 1
                        )
                        submit = await client.post(
                            f"{system.url('intake')}/api/v1/auth/wechat",
                            json={"code": "dev:during-outage"},
                        )
                        during_outage[submit.status_code] = (
                            during_outage.get(submit.status_code, 0) + 1
                        )
                        if submit.status_code == 503:
                            assert submit.headers.get("Retry-After")
                    await asyncio.sleep(0.5)
            system.postgres.start()

        figures = await _during_load(system, 14, outage())
        result = await settle(system, figures, within=120)
        record_figures("postgres_outage", figures, result)
        assert set(during_outage) <= {503}, during_outage
        assert 503 in figures.answers or figures.retried_requests > 0
        assert_nothing_lost_or_doubled(figures, result)


async def test_relays_killed_between_publish_and_marking(server_home: Path) -> None:
    async with platform(server_home) as system:

        async def keep_killing_relays() -> None:
            for _ in range(8):
                await asyncio.sleep(1.2)
                for name in ("intake-relay", "verification-relay"):
                    system.processes[name].signal(signal.SIGKILL)
                await asyncio.sleep(0.3)
                for name in ("intake-relay", "verification-relay"):
                    system.processes[name].popen.wait()  # type: ignore[union-attr]
                    system.processes[name].start()

        figures = await _during_load(system, 12, keep_killing_relays())
        result = await settle(system, figures)
        record_figures("relays_sigkilled", figures, result)
        assert_nothing_lost_or_doubled(figures, result)


async def test_every_event_delivered_twice_to_every_consumer(server_home: Path) -> None:
    async with platform(server_home) as system:
        figures = await run_load(system, seconds=8)
        before = await settle(system, figures)
        assert_nothing_lost_or_doubled(figures, before)
        async with httpx.AsyncClient() as client:
            metrics_before = (
                await client.get(f"{system.url('notify')}/api/v1/metrics/closure")
            ).json()

        redis = SyncRedis.from_url(system.redis_url, decode_responses=True)
        copied = 0
        for key in list(redis.scan_iter("relief:*")):
            if redis.type(key) == "stream" and key != "relief:dead":
                entries: Any = redis.xrange(key)
                for _, fields in entries:
                    redis.xadd(key, fields)
                    copied += 1
        assert copied > figures.submitted * 3
        await asyncio.sleep(8)

        after = await settle(system, figures)
        record_figures("everything_delivered_twice", figures, after)
        assert after == before
        async with httpx.AsyncClient() as client:
            metrics_after = (
                await client.get(f"{system.url('notify')}/api/v1/metrics/closure")
            ).json()
        assert metrics_after == metrics_before
        _no_personal_data_leaked(system, figures)
