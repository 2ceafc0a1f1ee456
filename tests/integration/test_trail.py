"""A case's trail — audit entries and outbox events — is gathered during the transaction and
written in one statement when it commits (`shared.db.deferred`); a rollback leaves none."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.verification.cases.trail import announce, record
from services.verification.models import AuditAction, Case
from shared.db import now_utc, unit_of_work
from shared.errors import Conflict
from shared.events import EventType
from tests.integration.conftest import (
    FIELD_CHECK,
    Pipeline,
    citizen_headers,
    staff_headers,
    statements_run,
    submit,
)


@pytest.fixture
async def opened(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[str, dict[str, str]]:
    """An open medical-assistance case and the headers of a clerk who may claim it."""
    citizen = await citizen_headers(intake, "openid-trail")
    created = await submit(intake, citizen, item_code="medical_assistance")
    assert created.status_code == 201, created.text
    await pipeline.drain()
    clerk = await staff_headers(verification, sessionmaker, username="medins-trail")
    queue = (await verification.get("/api/v1/cases?status=open", headers=clerk)).json()
    return str(queue["items"][0]["id"]), clerk


async def _case(session: AsyncSession, case_id: str) -> Case:
    case = await session.get(Case, uuid.UUID(case_id))
    assert case is not None
    return case


async def _trail_rows(
    engine: AsyncEngine,
    case_id: str,
    entry: str = "action || ':' || to_status",
    event: str = "envelope->>'type'",
) -> tuple[list[str | None], list[str | None]]:
    """What each of the case's audit entries and events shows (`entry` and `event` are SQL
    expressions over their rows), in the order written."""
    async with engine.connect() as conn:
        audit = await conn.execute(
            text(
                f"SELECT {entry} FROM verification.case_audit_log WHERE case_id = :id ORDER BY id"
            ),
            {"id": case_id},
        )
        events = await conn.execute(
            text(
                f"SELECT {event} FROM verification.outbox"
                " WHERE envelope->'payload'->>'case_id' = :id ORDER BY id"
            ),
            {"id": case_id},
        )
        return [row[0] for row in audit], [row[0] for row in events]


async def test_a_clerk_action_writes_its_audit_entry_and_event_in_one_statement(
    opened: tuple[str, dict[str, str]], verification: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case_id, clerk = opened
    with statements_run() as statements:
        claimed = await verification.post(f"/api/v1/cases/{case_id}/claim", headers=clerk)
    assert claimed.status_code == 200, claimed.text
    inserts = [s for s in statements if "INSERT" in s.upper()]
    assert len(inserts) == 1, inserts
    assert "case_audit_log" in inserts[0] and "outbox" in inserts[0]

    audit, events = await _trail_rows(engine, case_id)
    assert audit == ["transition:open", "transition:claimed"]
    assert events == ["case.opened", "case.claimed"]
    history = await verification.get(f"/api/v1/cases/{case_id}/history", headers=clerk)
    last = history.json()[-1]
    assert (last["from_status"], last["to_status"], last["actor_name"]) == (
        "open",
        "claimed",
        "medins-trail",
    )


async def test_several_changes_in_one_transaction_keep_their_order(
    opened: tuple[str, dict[str, str]],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    case_id, _ = opened
    async with unit_of_work(sessionmaker) as session:
        case = await _case(session, case_id)
        for n in range(3):
            record(
                session, case, at=now_utc(), actor=None, action=AuditAction.DEADLINE, reason=str(n)
            )
            announce(session, case, EventType.CASE_DEADLINE_CHANGED, {"n": n}, now_utc())
    audit, events = await _trail_rows(engine, case_id)
    assert audit == ["transition:open"] + ["deadline:open"] * 3
    assert events == ["case.opened"] + ["case.deadline_changed"] * 3
    reasons, numbers = await _trail_rows(engine, case_id, "reason", "envelope->'payload'->>'n'")
    assert reasons == [None, "0", "1", "2"]
    assert numbers == [None, "0", "1", "2"]


async def test_a_rolled_back_change_leaves_no_trail_behind(
    opened: tuple[str, dict[str, str]],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    case_id, _ = opened
    before = await _trail_rows(engine, case_id)
    with pytest.raises(Conflict):
        async with unit_of_work(sessionmaker) as session:
            case = await _case(session, case_id)
            record(session, case, at=now_utc(), actor=None, reason="rolled back")
            announce(session, case, EventType.CASE_RELEASED, {}, now_utc())
            raise Conflict("失败", code="test_failure")
    assert await _trail_rows(engine, case_id) == before

    # The same session, rolled back and then used again: what it gathered before is gone.
    async with sessionmaker() as session:
        case = await _case(session, case_id)
        record(session, case, at=now_utc(), actor=None, reason="dropped")
        await session.rollback()
        case = await _case(session, case_id)
        record(session, case, at=now_utc(), actor=None, action=AuditAction.DEADLINE)
        await session.commit()
    audit, events = await _trail_rows(engine, case_id)
    assert audit == [*before[0], "deadline:open"]
    assert events == before[1]


async def test_the_trail_refuses_a_savepoint(
    opened: tuple[str, dict[str, str]], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    case_id, _ = opened
    async with sessionmaker() as session:
        case = await _case(session, case_id)
        async with session.begin_nested():
            with pytest.raises(RuntimeError, match="savepoint"):
                record(session, case, at=now_utc(), actor=None)


def _case_updates(statements: list[str]) -> list[str]:
    return [s for s in statements if "UPDATE verification.cases" in s]


async def _case_row(engine: AsyncEngine, case_id: str, columns: str) -> tuple[object, ...]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {columns} FROM verification.cases WHERE id = :id"), {"id": case_id}
            )
        ).one()
        return tuple(row)


async def test_a_clerk_action_writes_the_case_with_its_trail_in_one_statement(
    opened: tuple[str, dict[str, str]], verification: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    case_id, clerk = opened
    url = f"/api/v1/cases/{case_id}"
    assert (await verification.post(f"{url}/claim", headers=clerk)).status_code == 200
    for path, body, status in (
        ("/advance", {"note": "材料齐全"}, "field_check"),
        ("/field-check", FIELD_CHECK, "field_check"),
        ("/request-info", {"message": "请补充诊断证明"}, "field_check"),
    ):
        with statements_run() as statements:
            answer = await verification.post(f"{url}{path}", headers=clerk, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status
        # The case's UPDATE, its audit entry and its event: one statement, no UPDATE of its own.
        [update] = _case_updates(statements)
        assert "case_audit_log" in update and "verification.outbox" in update, update
    row = await _case_row(
        engine, case_id, "status, info_request, field_check->>'findings', updated_at, claimed_at"
    )
    assert row[:3] == ("field_check", "请补充诊断证明", FIELD_CHECK["findings"])
    updated_at, claimed_at = row[3:]
    assert isinstance(updated_at, datetime) and isinstance(claimed_at, datetime)
    assert updated_at > claimed_at
    audit, events = await _trail_rows(engine, case_id)
    assert audit == [
        "transition:open",
        "transition:claimed",
        "transition:field_check",
        "field_check:field_check",
        "request_info:field_check",
    ]
    assert events[-1] == "case.info_requested"


async def test_a_change_written_with_the_trail_is_the_change_the_flush_would_write(
    opened: tuple[str, dict[str, str]],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """JSON columns as JSON (None as SQL NULL), and `updated_at` set by the database when
    the change did not set it, as the model's `onupdate` does in a flush."""
    case_id, _ = opened
    (before,) = await _case_row(engine, case_id, "updated_at")
    async with unit_of_work(sessionmaker) as session:
        case = await _case(session, case_id)
        case.field_check = {"findings": "入户核实", "household_confirmed": True}
        case.measures = None
        case.paused_seconds = 7
        record(session, case, at=now_utc(), actor=None, action=AuditAction.FIELD_CHECK)
    row = await _case_row(
        engine,
        case_id,
        "field_check->>'findings', jsonb_typeof(field_check), measures IS NULL,"
        " paused_seconds, updated_at",
    )
    assert row[:4] == ("入户核实", "object", True, 7)
    assert isinstance(row[4], datetime) and isinstance(before, datetime) and row[4] > before
    audit, _ = await _trail_rows(engine, case_id)
    assert audit[-1] == "field_check:open"


async def test_a_trail_about_several_cases_leaves_their_changes_to_the_flush(
    intake: httpx.AsyncClient,
    opened: tuple[str, dict[str, str]],
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    first, _ = opened
    citizen = await citizen_headers(intake, "openid-trail-second")
    assert (await submit(intake, citizen, item_code="medical_assistance")).status_code == 201
    await pipeline.drain()
    async with engine.connect() as conn:
        second = str(
            (
                await conn.execute(
                    text("SELECT id FROM verification.cases WHERE id <> :id"), {"id": first}
                )
            ).scalar_one()
        )
    with statements_run() as statements:
        async with unit_of_work(sessionmaker) as session:
            for n, case_id in enumerate((first, second)):
                case = await _case(session, case_id)
                case.info_request = f"batch {n}"
                record(session, case, at=now_utc(), actor=None, action=AuditAction.DEADLINE)
    updates = _case_updates(statements)
    assert updates and not any("case_audit_log" in s for s in updates), updates
    for n, case_id in enumerate((first, second)):
        assert await _case_row(engine, case_id, "info_request") == (f"batch {n}",)
        audit, _ = await _trail_rows(engine, case_id)
        assert audit[-1] == "deadline:open"


async def test_a_change_the_database_refuses_leaves_neither_the_case_nor_its_trail(
    opened: tuple[str, dict[str, str]],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    case_id, _ = opened
    before = await _case_row(engine, case_id, "status, updated_at")
    trail_before = await _trail_rows(engine, case_id)
    with pytest.raises(DBAPIError):
        async with unit_of_work(sessionmaker) as session:
            case = await _case(session, case_id)
            case.status = "x" * 30  # longer than the column allows
            record(session, case, at=now_utc(), actor=None)
            announce(session, case, EventType.CASE_RELEASED, {}, now_utc())
    assert await _case_row(engine, case_id, "status, updated_at") == before
    assert await _trail_rows(engine, case_id) == trail_before
