"""The pool pings a connection only after it sat idle: a dead one is then replaced before a
request sees it, while one in steady use costs no extra round trips."""

from __future__ import annotations

import asyncio

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


def _pool_of_one(idle_seconds: float) -> AsyncEngine:
    return create_engine(
        ServiceSettings(db_pool_size=1, db_max_overflow=0, db_ping_after_idle_seconds=idle_seconds),
        application_name="relief-tests-pool",
    )


async def test_a_connection_dead_after_idling_is_replaced_unseen(admin: AsyncEngine) -> None:
    engine = _pool_of_one(0.2)
    try:
        first = await _backend_pid(engine)
        await _terminate(admin, first)
        await asyncio.sleep(0.3)  # idle past the threshold: checked before use
        second = await _backend_pid(engine)
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_in_steady_use_is_not_pinged(admin: AsyncEngine) -> None:
    engine = _pool_of_one(3600)
    try:
        first = await _backend_pid(engine)
        await _terminate(admin, first)
        # Not idle long enough to be pinged: the dead connection reaches the query, which
        # fails as a connection error (answered 503 by the services) ...
        with pytest.raises(DBAPIError) as failed:
            await _backend_pid(engine)
        assert is_connection_error(failed.value)
        # ... and the pool has dropped it: the next query gets a new one.
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_zero_pings_on_every_checkout(admin: AsyncEngine) -> None:
    engine = _pool_of_one(0)
    try:
        first = await _backend_pid(engine)
        await _terminate(admin, first)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()
