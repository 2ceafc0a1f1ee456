"""A case's trail — audit entries and outbox events — is gathered during the transaction and
written in one statement when it commits (`shared.db.deferred`); a rollback leaves none."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.verification.cases.trail import announce, record
from services.verification.models import AuditAction, Case
from shared.db import now_utc, unit_of_work
from shared.errors import Conflict
from shared.events import EventType
from tests.integration.conftest import (
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
