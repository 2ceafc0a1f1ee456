"""The pool pings a connection only after it sat idle: a dead one is then replaced before a
request sees it, while one in steady use costs no extra round trips."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine
from shared.errors import is_connection_error
from shared.settings import ServiceSettings


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(admin: AsyncEngine, pid: int) -> None:
    async with admin.connect() as conn:
        killed = await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert killed.scalar()
    await asyncio.sleep(0.05)  # let the backend go


@pytest.fixture
def admin(engine: AsyncEngine) -> AsyncEngine:
    """The tests' own engine, to terminate the pool's backend from outside."""
    return engine


@asynccontextmanager
async def _pool_of_one(idle_seconds: float) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        ServiceSettings(db_pool_size=1, db_max_overflow=0, db_ping_after_idle_seconds=idle_seconds),
        application_name="relief-tests-pool",
    )
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("idle_seconds", "pause"),
    [
        pytest.param(0.2, 0.3, id="idle past the threshold: checked before use"),
        pytest.param(0, 0, id="0 pings on every checkout"),
    ],
)
async def test_a_connection_dead_after_idling_is_replaced_unseen(
    admin: AsyncEngine, idle_seconds: float, pause: float
) -> None:
    async with _pool_of_one(idle_seconds) as engine:
        first = await _backend_pid(engine)
        await _terminate(admin, first)
        await asyncio.sleep(pause)
        assert await _backend_pid(engine) != first


async def test_a_connection_in_steady_use_is_not_pinged(admin: AsyncEngine) -> None:
    async with _pool_of_one(3600) as engine:
        first = await _backend_pid(engine)
        await _terminate(admin, first)
        # Not idle long enough to be pinged: the dead connection reaches the query, which
        # fails as a connection error (answered 503 by the services) ...
        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(engine)
        assert is_connection_error(failed.value)
        # ... and the pool has dropped it: the next query gets a new one.
        assert await _backend_pid(engine) != first
