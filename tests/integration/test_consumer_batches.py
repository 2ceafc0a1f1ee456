"""Intake's and notify's consumers lock and load the rows a batch touches in one query,
verification's writes the cases a batch opens in one statement, and a batch ends where the
same events applied one message at a time end."""

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
from services.intake.models import OutboxMessage as IntakeOutbox
from services.intake.worker import GROUP as INTAKE_GROUP
from services.intake.worker import handle_event as intake_handler
from services.intake.worker import prepare_batch as intake_prepare
from services.notify.facts.service import lock_for_events as notify_prepare
from services.notify.models import InboxEvent as NotifyInbox
from services.notify.settings import NotifySettings
from services.notify.worker import GROUP as NOTIFY_GROUP
from services.notify.worker import event_handler as notify_event_handler
from services.verification.cases.routing import open_cases, reannounce_opened
from services.verification.models import InboxEvent as VerificationInbox
from services.verification.worker import GROUP as VERIFICATION_GROUP
from services.verification.worker import handle_route
from shared.events import EVENTS_STREAM, Envelope, EventType, route_stream
from shared.outbox import InboxMixin, OutboxRelay
from shared.streams import Handler, Prepare, StreamConsumer
from tests.factories import resident_id
from tests.integration.conftest import (
    citizen_headers,
    empty_everything,
    statements_run,
    stream_entries,
    submit,
)

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
    stream: str = EVENTS_STREAM,
) -> StreamConsumer:
    """The service's consumer as its worker runs it; one message at a time if not batched."""
    group: str
    inbox: type[InboxMixin]
    handler: Handler
    prepare: Prepare
    on_duplicate: Handler | None = None
    if service == "intake":
        group, inbox, handler, prepare = INTAKE_GROUP, IntakeInbox, intake_handler, intake_prepare
    elif service == "verification":
        group, inbox, handler, prepare = (
            VERIFICATION_GROUP,
            VerificationInbox,
            handle_route,
            open_cases,
        )
        on_duplicate = reannounce_opened
    else:
        group, inbox, prepare = NOTIFY_GROUP, NotifyInbox, notify_prepare
        handler = notify_event_handler(NotifySettings())
    return StreamConsumer(
        redis=redis,
        sessionmaker=sessionmaker,
        inbox_model=inbox,
        group=group,
        consumer=f"{group}-test",
        streams=[stream],
        handler=handler,
        prepare=prepare,
        on_duplicate=on_duplicate,
        batch_size=64 if batched else 1,
    )


async def _consume(
    redis: Redis, consumer: StreamConsumer, events: list[Envelope], stream: str = EVENTS_STREAM
) -> list[str]:
    """Apply the events; returns the SQL run meanwhile."""
    await consumer.ensure_groups()
    for envelope in events:
        await redis.xadd(stream, envelope.to_fields())
    with statements_run() as statements:
        while await consumer.read_batch(block_ms=None):
            pass
    return statements


def _selects_from(statements: list[str], table: str) -> int:
    pattern = re.compile(rf"^\s*SELECT\b.*\bFROM {re.escape(table)}\b", re.DOTALL)
    return sum(1 for sql in statements if pattern.match(sql))


def _inserts_into(statements: list[str], table: str) -> int:
    pattern = re.compile(rf"^\s*INSERT INTO {re.escape(table)}\b")
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


# --- notify: facts, closure counters, notifications, escalations -------------------------

ITEM = "medical_assistance"
REGION = "530129"
DEADLINE = AT + timedelta(days=20)
# Two applications whose facts exist before the batch; one submitted and opened within it;
# one decided before its submission is seen, both within it; one never submitted.
P, Q, N, D, U = (uuid.UUID(int=n) for n in (101, 102, 103, 104, 105))


def _submitted(application_id: uuid.UUID, minute: int, openid: str) -> Envelope:
    return _event(
        EventType.APPLICATION_SUBMITTED,
        application_id,
        minute,
        item_code=ITEM,
        region_code=REGION,
        deadline=DEADLINE.isoformat(),
        submitted_at=AT.isoformat(),
        recipient={"openid": openid, "phone_enc": None},
    )


def _decided(application_id: uuid.UUID, minute: int, outcome: str) -> Envelope:
    return _event(
        EventType.CASE_DECIDED,
        application_id,
        minute,
        case_id=str(uuid.UUID(int=application_id.int + 1000)),
        outcome=outcome,
        reason="核实完毕",
        measures=[],
        on_time=True,
        item_code=ITEM,
        region_code=REGION,
        submitted_at=AT.isoformat(),
        deadline=DEADLINE.isoformat(),
    )


def _case(kind: EventType, application_id: uuid.UUID, minute: int, **payload: Any) -> Envelope:
    case_id = str(uuid.UUID(int=application_id.int + 1000))
    return _event(kind, application_id, minute, case_id=case_id, **payload)


BEFORE_BATCH = [_submitted(P, 0, "openid-p"), _submitted(Q, 0, "openid-q")]
OPENED_N = _case(EventType.CASE_OPENED, N, 2)
BATCH = [
    _submitted(N, 1, "openid-n"),
    _case(EventType.CASE_OPENED, P, 1),
    OPENED_N,
    _case(EventType.CASE_OPENED, Q, 2),
    _decided(D, 3, "approved"),
    _case(EventType.CASE_CLAIMED, P, 4, assignee_id=str(uuid.UUID(int=7))),
    _case(EventType.CASE_INFO_REQUESTED, Q, 5, message="住院发票原件"),
    _submitted(D, 6, "openid-d"),
    _case(EventType.CASE_OPENED, U, 7),
    _case(
        EventType.CASE_OVERDUE,
        P,
        8,
        deadline=DEADLINE.isoformat(),
        region_code=REGION,
        item_code=ITEM,
        status="claimed",
        assignee_id=str(uuid.UUID(int=7)),
    ),
    _decided(Q, 9, "rejected"),
    _case(EventType.CASE_CLAIMED, N, 10, assignee_id=str(uuid.UUID(int=8))),
    OPENED_N,
]


async def _notify_state(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    queries = {
        "facts": "SELECT application_id, department, item_code, region_code, received_at, "
        "deadline, closed_at, outcome, rating, overdue, recipient_openid, recipient_phone_enc, "
        "case_id, assignee_id, waiting_for_citizen FROM notify.application_facts "
        "ORDER BY application_id",
        "rollups": "SELECT * FROM notify.closure_rollups ORDER BY dimension, key, day",
        "notifications": "SELECT event_id, application_id, kind, text, template_data, "
        "recipient_openid, status FROM notify.notifications ORDER BY event_id",
        "reminders": "SELECT case_id, kind, application_id, department, region_code, "
        "assignee_id, text, deadline FROM notify.staff_reminders ORDER BY case_id, kind",
    }
    async with engine.connect() as conn:
        return {
            name: [dict(row._mapping) for row in await conn.execute(text(sql))]
            for name, sql in queries.items()
        }


async def _notify_run(
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    batch: list[Envelope],
    *,
    batched: bool,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    await _consume(
        redis, _consumer(redis, sessionmaker, service="notify", batched=False), BEFORE_BATCH
    )
    consumer = _consumer(redis, sessionmaker, service="notify", batched=batched)
    statements = await _consume(redis, consumer, batch)
    distinct = len({e.event_id for e in batch})
    assert (consumer.stats.processed, consumer.stats.duplicates) == (
        distinct,
        len(batch) - distinct,
    )
    return await _notify_state(engine), statements


async def _batched_and_singly(
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    batch: list[Envelope],
) -> tuple[dict[str, list[dict[str, Any]]], list[str], dict[str, list[dict[str, Any]]], list[str]]:
    batched, batched_sql = await _notify_run(redis, sessionmaker, engine, batch, batched=True)
    await empty_everything(engine, redis)
    singly, single_sql = await _notify_run(redis, sessionmaker, engine, batch, batched=False)
    return batched, batched_sql, singly, single_sql


async def test_notify_locks_a_batchs_facts_in_one_query_and_ends_as_one_by_one(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    batched, batched_sql, singly, single_sql = await _batched_and_singly(
        redis, sessionmaker, engine, BATCH
    )

    assert _selects_from(batched_sql, "notify.application_facts") == 1
    assert _selects_from(single_sql, "notify.application_facts") == 12  # one per new event
    assert batched == singly
    # The batch's counter changes, summed per row, and its notifications: one write each,
    # at its commit; one by one, a write per event that changed them.
    rollup_writes = [
        _inserts_into(sql, "notify.closure_rollups") for sql in (batched_sql, single_sql)
    ]
    notification_writes = [
        _inserts_into(sql, "notify.notifications") for sql in (batched_sql, single_sql)
    ]
    assert rollup_writes == [1, 4]  # N submitted, D decided, P overdue, Q decided
    assert notification_writes == [1, 5]  # P, N, Q opened; Q asked for papers, decided
    facts = {row["application_id"]: row for row in batched["facts"]}
    assert set(facts) == {P, Q, N, D}  # U was never submitted
    # N's case.opened came in the batch that created its fact, and was followed.
    assert facts[N]["case_id"] == uuid.UUID(int=N.int + 1000)
    assert facts[N]["assignee_id"] == uuid.UUID(int=8)
    # D's decision created the fact; its submission, later in the batch, added whom to tell.
    assert (facts[D]["outcome"], facts[D]["recipient_openid"]) == ("approved", "openid-d")
    assert [row["application_id"] for row in batched["reminders"]] == [P]


async def test_notify_follows_a_case_opened_batched_with_its_submission(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    """The fact the submission adds is not flushed (autoflush is off), so a query would not
    see it: case.opened must find it among the batch's rows, or it is silently dropped."""
    batch = [_submitted(N, 1, "openid-n"), OPENED_N]
    batched, batched_sql, singly, _ = await _batched_and_singly(redis, sessionmaker, engine, batch)

    assert _selects_from(batched_sql, "notify.application_facts") == 1
    assert batched == singly
    [fact] = [row for row in batched["facts"] if row["application_id"] == N]
    assert fact["case_id"] == uuid.UUID(int=N.int + 1000)
    accepted = [n for n in batched["notifications"] if n["application_id"] == N]
    assert [n["kind"] for n in accepted] == ["accepted"]


# --- verification: the cases a batch opens ----------------------------------------------

ROUTE = route_stream(DEPARTMENT)


async def _routed(intake: httpx.AsyncClient, redis: Redis, sessionmaker: Any) -> list[Envelope]:
    """Three submissions, as intake routes them to the department's stream."""
    citizen = await citizen_headers(intake, "openid-route-batch")
    for _ in range(3):
        created = await submit(intake, citizen, applicant={"id_number": resident_id()})
        assert created.status_code == 201, created.text
    await OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=IntakeOutbox).publish_batch()
    routed = [Envelope.from_fields(fields) for _, fields in await stream_entries(redis, ROUTE)]
    await redis.delete(ROUTE)
    assert [e.type for e in routed] == [EventType.APPLICATION_SUBMITTED] * 3
    return routed


async def _verification_state(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """The cases, their trail and their announcements, without what differs between runs
    (the ids the consumer draws, the times it writes)."""
    queries = {
        "cases": "SELECT application_id, route_event_id, department, item_code, region_code, "
        "status, outcome, applicant_name, id_number_enc, phone_enc, id_number_masked, "
        "phone_masked, household, description, form, prescreen, submitted_by_role, "
        "submitted_at, deadline, paused_seconds, opened_event_id IS NOT NULL "
        "FROM verification.cases ORDER BY application_id",
        "trail": "SELECT c.application_id, a.action, a.from_status, a.to_status, a.actor_role, "
        "a.reason FROM verification.case_audit_log a JOIN verification.cases c "
        "ON c.id = a.case_id ORDER BY c.application_id, a.id",
        "announced": "SELECT envelope->>'type', envelope->>'application_id', "
        "envelope->'payload'->>'item_code', "
        "(envelope->>'event_id')::uuid = c.opened_event_id "
        "FROM verification.outbox o JOIN verification.cases c "
        "ON c.application_id = (o.envelope->>'application_id')::uuid ORDER BY o.id",
    }
    async with engine.connect() as conn:
        return {
            name: [tuple(row) for row in await conn.execute(text(sql))]
            for name, sql in queries.items()
        }


async def _verification_run(
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    routed: list[Envelope],
    *,
    batched: bool,
) -> tuple[dict[str, list[tuple[Any, ...]]], list[str]]:
    a, b, c = routed
    withdrawn = _event(EventType.APPLICATION_WITHDRAWN, c.application_id, 5, reason="已自行解决")
    consumer = _consumer(redis, sessionmaker, service="verification", batched=batched, stream=ROUTE)
    # B's copy is a duplicate within the batch; C is withdrawn right after it is opened.
    statements = await _consume(redis, consumer, [a, b, b, c, withdrawn], ROUTE)
    assert (consumer.stats.processed, consumer.stats.duplicates) == (4, 1)
    # Past the inbox (a consumer group made anew), the route events open nothing again.
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE verification.inbox"))
    statements += await _consume(redis, consumer, [a, c], ROUTE)
    state = await _verification_state(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE verification.cases, verification.case_audit_log, "
                "verification.outbox, verification.inbox CASCADE"
            )
        )
    await redis.delete(ROUTE)
    return state, statements


async def test_verification_opens_a_batchs_cases_in_one_statement_and_ends_as_one_by_one(
    intake: httpx.AsyncClient,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    routed = await _routed(intake, redis, sessionmaker)
    batched, batched_sql = await _verification_run(
        redis, sessionmaker, engine, routed, batched=True
    )
    singly, single_sql = await _verification_run(redis, sessionmaker, engine, routed, batched=False)

    case_writes = [_inserts_into(sql, "verification.cases") for sql in (batched_sql, single_sql)]
    assert case_writes == [2, 5]  # a batch and its repeat; one by one, A, B, C, then A, C
    assert batched == singly
    assert [row[0] for row in batched["cases"]] == sorted(e.application_id for e in routed)
    by_application = {row[0]: row for row in batched["cases"]}
    assert [by_application[e.application_id][5:7] for e in routed] == [
        ("open", None),
        ("open", None),
        ("decided", "withdrawn"),
    ]
    trail: dict[uuid.UUID, list[tuple[Any, ...]]] = {e.application_id: [] for e in routed}
    for application_id, *entry in batched["trail"]:
        trail[application_id].append(tuple(entry[1:4]))
    opened = (None, "open", "system")
    assert list(trail.values()) == [[opened], [opened], [opened, ("open", "decided", "citizen")]]
    assert [row[0] for row in batched["announced"]] == [EventType.CASE_OPENED] * 3
    assert all(row[3] for row in batched["announced"])  # announced with the case's event id
