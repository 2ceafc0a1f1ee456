"""Intake's consumer locks and loads the rows a batch touches in one query, and a batch
ends where the same events applied one message at a time end."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake.models import InboxEvent as IntakeInbox
from services.intake.worker import GROUP as INTAKE_GROUP
from services.intake.worker import handle_event as intake_handler
from services.intake.worker import prepare_batch as intake_prepare
from shared.events import EVENTS_STREAM, Envelope, EventType
from shared.outbox import InboxMixin
from shared.streams import Handler, Prepare, StreamConsumer
from tests.integration.conftest import citizen_headers, empty_everything, statements_run, submit

AT = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DEPARTMENT = "medins"


def _event(kind: EventType, application_id: uuid.UUID, minute: int, **payload: Any) -> Envelope:
    return Envelope(
        type=kind,
        application_id=application_id,
        department=DEPARTMENT,
        occurred_at=AT + timedelta(minutes=minute),
        payload=payload,
    )


def _consumer(
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    service: str,
    batched: bool,
) -> StreamConsumer:
    """The service's consumer as its worker runs it; one message at a time if not batched."""
    group: str
    inbox: type[InboxMixin]
    handler: Handler
    prepare: Prepare
    if service == "intake":
        group, inbox, handler, prepare = INTAKE_GROUP, IntakeInbox, intake_handler, intake_prepare
    else:
        raise ValueError(service)
    return StreamConsumer(
        redis=redis,
        sessionmaker=sessionmaker,
        inbox_model=inbox,
        group=group,
        consumer=f"{group}-test",
        streams=[EVENTS_STREAM],
        handler=handler,
        prepare=prepare,
        batch_size=64 if batched else 1,
    )


async def _consume(redis: Redis, consumer: StreamConsumer, events: list[Envelope]) -> list[str]:
    """Apply the events; returns the SQL run meanwhile."""
    await consumer.ensure_groups()
    for envelope in events:
        await redis.xadd(EVENTS_STREAM, envelope.to_fields())
    with statements_run() as statements:
        while await consumer.read_batch(block_ms=None):
            pass
    return statements


def _selects_from(statements: list[str], table: str) -> int:
    pattern = re.compile(rf"^\s*SELECT\b.*\bFROM {re.escape(table)}\b", re.DOTALL)
    return sum(1 for sql in statements if pattern.match(sql))


# --- intake: the citizen's status and timeline ------------------------------------------

MOVED_DEADLINE = AT + timedelta(days=40)


def _case_events(a: uuid.UUID, b: uuid.UUID, c: uuid.UUID) -> list[Envelope]:
    """Several events for each of three applications, interleaved, one for an application
    intake does not have, one it ignores, and a copy of one event."""
    claimed = _event(EventType.CASE_CLAIMED, a, 3, assignee_id=str(uuid.UUID(int=7)))
    return [
        _event(EventType.CASE_OPENED, a, 1, case_id=str(uuid.UUID(int=1))),
        _event(EventType.CASE_OPENED, b, 2, case_id=str(uuid.UUID(int=2))),
        claimed,
        _event(EventType.CASE_OPENED, c, 4, case_id=str(uuid.UUID(int=3))),
        _event(EventType.CASE_OPENED, uuid.UUID(int=99), 5, case_id=str(uuid.UUID(int=9))),
        _event(EventType.CASE_INFO_REQUESTED, b, 6, message="住院发票原件"),
        _event(
            EventType.CASE_DECIDED,
            c,
            7,
            outcome="approved",
            reason="家庭人均收入低于监测线",
            measures=[{"type": "health", "description": "医疗救助金 8000 元"}],
        ),
        _event(EventType.APPLICATION_SUPPLEMENTED, b, 8, message="已补充"),
        _event(EventType.CASE_DEADLINE_CHANGED, a, 9, deadline=MOVED_DEADLINE.isoformat()),
        _event(EventType.CASE_STAGE_PASSED, c, 10, stage_name="公示"),  # after closure
        _event(EventType.CASE_TRANSFERRED, b, 11, to_department="civil"),  # the item stays
        claimed,
    ]


async def _intake_state(engine: AsyncEngine, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """What the events left on each application (by position: ids differ between runs)."""
    state = []
    async with engine.connect() as conn:
        for application_id in ids:
            row = (
                await conn.execute(
                    text(
                        "SELECT status, department, item_code, case_id, routed_at, "
                        "info_request, outcome, closed_at, decision, "
                        "deadline = :moved AS deadline_moved "
                        "FROM intake.applications WHERE id = :id"
                    ),
                    {"id": application_id, "moved": MOVED_DEADLINE},
                )
            ).one()
            timeline = (
                await conn.execute(
                    text(
                        "SELECT kind, title, detail, occurred_at FROM intake.timeline_entries "
                        "WHERE application_id = :id AND source_event_id IS NOT NULL "
                        "ORDER BY occurred_at, id"
                    ),
                    {"id": application_id},
                )
            ).all()
            state.append({**row._asdict(), "timeline": [tuple(t) for t in timeline]})
    return state


async def _intake_run(
    intake: httpx.AsyncClient,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    *,
    batched: bool,
) -> tuple[list[dict[str, Any]], int]:
    citizen = await citizen_headers(intake, "openid-batch")
    ids = []
    for _ in range(3):
        created = await submit(intake, citizen)
        assert created.status_code == 201, created.text
        ids.append(uuid.UUID(created.json()["id"]))
    consumer = _consumer(redis, sessionmaker, service="intake", batched=batched)
    statements = await _consume(redis, consumer, _case_events(*ids))
    assert (consumer.stats.processed, consumer.stats.duplicates) == (11, 1)
    return await _intake_state(engine, ids), _selects_from(statements, "intake.applications")


async def test_intake_locks_a_batchs_applications_in_one_query_and_ends_as_one_by_one(
    intake: httpx.AsyncClient,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    batched, batched_selects = await _intake_run(intake, redis, sessionmaker, engine, batched=True)
    await empty_everything(engine, redis)
    singly, single_selects = await _intake_run(intake, redis, sessionmaker, engine, batched=False)

    assert batched_selects == 1
    assert single_selects == 10  # one per case event of a new message
    assert batched == singly
    assert [s["status"] for s in batched] == ["in_review", "needs_info", "closed"]
    assert (batched[1]["department"], batched[1]["item_code"]) == ("civil", "medical_assistance")
    assert batched[0]["deadline_moved"]
    assert [t[0] for t in batched[2]["timeline"]] == [
        "case.opened",
        "case.decided",
        "case.stage_passed",
    ]
