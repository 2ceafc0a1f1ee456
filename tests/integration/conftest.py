"""In-process services over HTTP (httpx + ASGI, with each app's real lifespan, middleware
and auth), and the real relays and consumers driven step by step."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, Pool

from services.intake.app import create_app as create_intake
from services.intake.models import InboxEvent as IntakeInbox
from services.intake.models import OutboxMessage as IntakeOutbox
from services.intake.settings import IntakeSettings
from services.intake.worker import GROUP as INTAKE_GROUP
from services.intake.worker import handle_event as intake_handler
from services.intake.worker import prepare_batch as intake_prepare
from services.notify.app import create_app as create_notify
from services.notify.facts.service import lock_for_events as notify_prepare
from services.notify.models import InboxEvent as NotifyInbox
from services.notify.settings import NotifySettings
from services.notify.worker import GROUP as NOTIFY_GROUP
from services.notify.worker import event_handler as notify_event_handler
from services.verification.accounts.service import create_user
from services.verification.app import create_app as create_verification
from services.verification.cases.routing import open_cases, reannounce_opened
from services.verification.models import InboxEvent as VerificationInbox
from services.verification.models import OutboxMessage as VerificationOutbox
from services.verification.settings import VerificationSettings
from services.verification.worker import GROUP as VERIFICATION_GROUP
from services.verification.worker import handle_route
from shared.auth import Role
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.events import EVENTS_STREAM, route_stream
from shared.outbox import OutboxRelay
from shared.redis import create_redis
from shared.settings import ServiceSettings
from shared.streams import Prepare, StreamConsumer
from tests.conftest import Infra
from tests.factories import application_body

SCHEMAS = ("intake", "verification", "notify")
PASSWORD = "test-password-1"


@pytest.fixture(scope="session")
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(ServiceSettings(), application_name="relief-tests")
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[Redis]:
    client = create_redis(infra.redis_url)
    yield client
    await client.aclose()


async def empty_everything(engine: AsyncEngine, redis: Redis) -> None:
    """Empty every table of the three services (Alembic's bookkeeping aside) and Redis."""
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname = ANY(:schemas) AND tablename <> 'alembic_version'"
                ),
                {"schemas": list(SCHEMAS)},
            )
        ).scalars()
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    await redis.flushdb()


@pytest.fixture(autouse=True)
async def clean(engine: AsyncEngine, redis: Redis) -> AsyncIterator[None]:
    """Every test starts from empty tables and an empty Redis."""
    await empty_everything(engine, redis)
    yield


async def _running(app: FastAPI, host: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}") as c,
    ):
        yield c


@pytest.fixture
async def intake(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _running(create_intake(IntakeSettings()), "intake"):
        yield client


@asynccontextmanager
async def intake_with(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An intake service with some settings changed (WeChat, limits, sizes...)."""
    async for client in _running(create_intake(IntakeSettings(**settings)), "intake"):
        yield client


@pytest.fixture
async def verification(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _running(create_verification(VerificationSettings()), "verification"):
        yield client


@pytest.fixture
async def notify(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _running(create_notify(NotifySettings()), "notify"):
        yield client


@dataclass
class Pipeline:
    """The relays and consumers of all three services, run until nothing moves."""

    relays: list[OutboxRelay]
    consumers: list[StreamConsumer]

    async def drain(self, max_rounds: int = 50) -> int:
        moved_total = 0
        for _ in range(max_rounds):
            moved = 0
            for relay in self.relays:
                moved += await relay.publish_batch()
            for consumer in self.consumers:
                moved += await consumer.read_batch(block_ms=None)
            moved_total += moved
            if moved == 0:
                return moved_total
        raise AssertionError("pipeline did not settle")


async def build_pipeline(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], *, name: str = "test"
) -> Pipeline:
    """The relays and consumers of all three services, as the processes run them."""

    def consumer(
        group: str,
        streams: list[str],
        inbox: type,
        handler: object,
        prepare: Prepare | None = None,
        on_duplicate: object = None,
    ) -> StreamConsumer:
        return StreamConsumer(
            redis=redis,
            sessionmaker=sessionmaker,
            inbox_model=inbox,
            group=group,
            consumer=f"{name}-{group}",
            streams=streams,
            handler=handler,  # type: ignore[arg-type]
            prepare=prepare,
            on_duplicate=on_duplicate,  # type: ignore[arg-type]
        )

    departments = VerificationSettings().served_departments()
    consumers = [
        consumer(
            VERIFICATION_GROUP,
            [route_stream(d) for d in departments],
            VerificationInbox,
            handle_route,
            open_cases,
            reannounce_opened,
        ),
        consumer(INTAKE_GROUP, [EVENTS_STREAM], IntakeInbox, intake_handler, intake_prepare),
        consumer(
            NOTIFY_GROUP,
            [EVENTS_STREAM],
            NotifyInbox,
            notify_event_handler(NotifySettings()),
            notify_prepare,
        ),
    ]
    for c in consumers:
        await c.ensure_groups()
    relays = [
        OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=IntakeOutbox),
        OutboxRelay(sessionmaker=sessionmaker, redis=redis, model=VerificationOutbox),
    ]
    return Pipeline(relays=relays, consumers=consumers)


@pytest.fixture
async def pipeline(
    redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Pipeline]:
    yield await build_pipeline(redis, sessionmaker)


async def citizen_headers(intake: httpx.AsyncClient, openid: str) -> dict[str, str]:
    response = await intake.post("/api/v1/auth/wechat", json={"code": f"dev:{openid}"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def staff_headers(
    verification: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    username: str,
    role: Role = Role.CLERK,
    department: str | None = "medins",
    region: str = "530129",
) -> dict[str, str]:
    async with unit_of_work(sessionmaker) as session:
        await create_user(
            session,
            username=username,
            password=PASSWORD,
            role=role,
            department=department,
            region_code=region,
        )
    response = await verification.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def submit(
    intake: httpx.AsyncClient, headers: dict[str, str], **overrides: object
) -> httpx.Response:
    return await intake.post(
        "/api/v1/applications",
        json=application_body(**overrides),
        headers={**headers, "Idempotency-Key": f"test-{uuid.uuid4()}"},
    )


FIELD_CHECK = {
    "visited_on": "2026-11-01",
    "findings": "入户核实，家庭成员与申报一致，住院发票属实。",
    "household_confirmed": True,
}


async def end_public_notice(sessionmaker: async_sessionmaker[AsyncSession], case_id: str) -> None:
    """Let the public notice period run out (time travel for tests)."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text(
                "UPDATE verification.cases SET notice_ends_at = now() - interval '1 second' "
                "WHERE id = :id"
            ),
            {"id": case_id},
        )


async def work_to_last_stage(
    verification: httpx.AsyncClient,
    clerk: dict[str, str],
    case_id: str,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> list[str]:
    """Pass every stage of the item's procedure up to the last one, where a decision is due.
    Returns the statuses the case went through."""
    url = f"/api/v1/cases/{case_id}"
    seen = []
    while True:
        detail = (await verification.get(url, headers=clerk)).json()
        seen.append(detail["status"])
        if detail["status"] == "field_check" and detail["field_check"] is None:
            checked = await verification.post(f"{url}/field-check", headers=clerk, json=FIELD_CHECK)
            assert checked.status_code == 200, checked.text
        if detail["status"] == "village_review":
            assert sessionmaker is not None, "a public notice needs the sessionmaker to end it"
            await end_public_notice(sessionmaker, case_id)
        if detail["stages"][-1]["status"] == detail["status"]:
            return seen
        advanced = await verification.post(f"{url}/advance", headers=clerk, json={})
        assert advanced.status_code == 200, advanced.text


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@contextmanager
def statements_run(*, transaction_control: bool = False) -> Iterator[list[str]]:
    """The SQL every engine in this process runs inside the block: what SQLAlchemy executes
    and what goes straight to asyncpg (`shared.db.DriverStatement`) on a connection checked
    out inside the block, in order; BEGIN, COMMIT and the like only if
    `transaction_control` (SQLAlchemy does not report them as statements)."""
    seen: list[str] = []
    loggers: list[tuple[Any, Any]] = []
    # What SQLAlchemy ran that asyncpg may report too (its executemany): reported once.
    by_sqlalchemy: Counter[str] = Counter()

    def record(*args: Any) -> None:
        seen.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)
        by_sqlalchemy[args[2]] += 1

    def on_driver_query(query: Any) -> None:
        # asyncpg reports what it runs itself (not the prepared statements SQLAlchemy runs),
        # after it ran, on the loop's next turn.
        if by_sqlalchemy[query.query] > 0:
            by_sqlalchemy[query.query] -= 1
            return
        control = query.query.lstrip().upper().startswith(_TRANSACTION_CONTROL)
        if transaction_control or not control:
            seen.append(query.query)

    def checked_out(_dbapi: object, entry: ConnectionPoolEntry, _proxy: object) -> None:
        driver = entry.driver_connection
        assert driver is not None
        driver.add_query_logger(on_driver_query)
        loggers.append((driver, on_driver_query))

    event.listen(Engine, "before_cursor_execute", record)
    event.listen(Pool, "checkout", checked_out)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)
        event.remove(Pool, "checkout", checked_out)
        for driver, logger in loggers:
            driver.remove_query_logger(logger)


async def stream_entries(redis: Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """XRANGE with the types decode_responses=True really gives (str ids and fields)."""
    result: Any = await redis.xrange(stream)
    return list(result)
