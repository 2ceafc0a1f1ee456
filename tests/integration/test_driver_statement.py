"""`DriverStatement` on a real PostgreSQL: straight to asyncpg in autocommit, through
SQLAlchemy in a transaction, and errors in SQLAlchemy's shape either way — a refused row
as IntegrityError, a killed backend as a disconnect that invalidates the connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import DriverStatement
from shared.errors import is_connection_error
from tests.integration.conftest import statements_run

_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
_INSERT = DriverStatement(
    text(
        "INSERT INTO pg_temp.driver_rows (id, doc, tags, at) "
        "SELECT CAST(:id AS uuid), CAST(:doc AS jsonb), CAST(:tags AS text[]), now() "
        "RETURNING doc ->> 'name'"
    )
)


async def _with_table(connection: AsyncConnection) -> None:
    # A pooled connection may still have the table of an earlier test.
    await connection.execute(text("DROP TABLE IF EXISTS pg_temp.driver_rows"))
    await connection.execute(
        text(
            "CREATE TEMP TABLE driver_rows (id uuid PRIMARY KEY, doc jsonb NOT NULL, "
            "tags text[] NOT NULL, at timestamptz NOT NULL)"
        )
    )


@contextmanager
def _run_by_sqlalchemy() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _row(name: str = "张三") -> dict[str, object]:
    return {"id": uuid.uuid4(), "doc": f'{{"name": "{name}"}}', "tags": ["a", "b"]}


async def test_in_autocommit_it_goes_to_asyncpg_and_commits_on_its_own(
    engine: AsyncEngine,
) -> None:
    with statements_run() as statements:
        async with engine.connect() as connection:
            await connection.execution_options(**_AUTOCOMMIT)
            await _with_table(connection)
            row = _row()
            with _run_by_sqlalchemy() as by_sqlalchemy:
                assert await _INSERT.scalar(connection, row) == "张三"
            await asyncio.sleep(0)  # asyncpg tells its query loggers on the loop's next turn
            assert [sql for sql in statements if sql.startswith("INSERT")] == [_INSERT.sql]
            assert by_sqlalchemy == []
            await connection.rollback()  # nothing to roll back: it committed on its own
            stored = await connection.execute(
                text("SELECT tags, doc FROM pg_temp.driver_rows WHERE id = :id"),
                {"id": row["id"]},
            )
            assert stored.one() == (["a", "b"], {"name": "张三"})


async def test_in_a_transaction_it_goes_through_sqlalchemy_and_rolls_back(
    engine: AsyncEngine,
) -> None:
    with statements_run() as statements:
        async with engine.connect() as connection:
            await _with_table(connection)
            await connection.commit()
            with _run_by_sqlalchemy() as by_sqlalchemy:
                assert await _INSERT.scalar(connection, _row()) == "张三"
            await asyncio.sleep(0)
            assert [sql for sql in statements if sql.startswith("INSERT")] == [_INSERT.sql]
            assert by_sqlalchemy == [_INSERT.sql]
            await connection.rollback()
            count = await connection.scalar(text("SELECT count(*) FROM pg_temp.driver_rows"))
            assert count == 0


async def test_a_refused_row_raises_sqlalchemys_integrity_error(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execution_options(**_AUTOCOMMIT)
        await _with_table(connection)
        row = _row()
        await _INSERT.scalar(connection, row)
        with pytest.raises(IntegrityError) as refused:
            await _INSERT.scalar(connection, {**row, "doc": '{"name": "李四"}'})
        cause = getattr(refused.value.orig, "__cause__", None)  # asyncpg's, under SQLAlchemy's
        assert getattr(cause, "constraint_name", None) == "driver_rows_pkey"
        count = await connection.scalar(text("SELECT count(*) FROM pg_temp.driver_rows"))
        assert count == 1
        # The connection is still good for the next statement.
        assert await _INSERT.scalar(connection, _row("王五")) == "王五"


async def test_a_killed_backend_is_a_disconnect_and_the_connection_is_invalidated(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execution_options(**_AUTOCOMMIT)
        await _with_table(connection)
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as failed:
            await _INSERT.scalar(connection, _row())
        assert failed.value.connection_invalidated
        assert is_connection_error(failed.value)
        assert connection.invalidated
    # The pool hands out a live connection afterwards.
    async with engine.connect() as fresh:
        assert await fresh.scalar(text("SELECT 1")) == 1
