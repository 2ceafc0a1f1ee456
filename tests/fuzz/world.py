"""A small seeded world for the API fuzzer: the three services running in-process, people
of every role, and applications and cases in several states, so that generated requests
reach past "not found" into the code that does the work."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from services.intake.auth.service import register_grid_worker
from services.intake.settings import IntakeSettings
from shared.auth import Role
from shared.db import unit_of_work
from tests.factories import APPROVAL, JPEG, resident_id
from tests.integration.conftest import (
    FIELD_CHECK,
    build_pipeline,
    citizen_headers,
    empty_everything,
    staff_headers,
    submit,
    work_to_last_stage,
)
from tests.outside import wechat

ANONYMOUS = "anonymous"
CITIZEN = "citizen"
GRID_WORKER = "grid_worker"
CLERK = "clerk"
SUPERVISOR = "supervisor"
ADMIN = "admin"

CITIZEN_OPENID = "fuzz-citizen"
OTHER_OPENID = "fuzz-other-citizen"
GRID_OPENID = "fuzz-grid"
# Accounts the fuzzer may disable, reset or assign to; the acting accounts stay usable.
SPARE_CLERK = "fuzz-spare-clerk"
CIVIL_CLERK = "fuzz-civil-clerk"
STAFF_USERNAMES = ("fuzz-clerk", "fuzz-supervisor", "fuzz-admin", SPARE_CLERK, CIVIL_CLERK)


SCHEMAS = ("intake", "verification", "notify")
UNLIMITED = "100000/minute"


def fuzz_intake_settings(wechat_base_url: str = "http://127.0.0.1:9") -> IntakeSettings:
    """Limits so high that a 429 never hides the answer a test is after, WeChat's code
    exchange played by the loopback stand-in (tests/outside/wechat.py), and only warnings
    logged: thousands of requests' info lines would bury what `pytest -s` should show."""
    return IntakeSettings(
        log_level="WARNING",
        wechat_base_url=wechat_base_url,
        wechat_appid=wechat.APPID,
        wechat_secret=wechat.SECRET,
        rate_login_per_ip=UNLIMITED,
        rate_login_per_user=UNLIMITED,
        rate_submit_per_user=UNLIMITED,
        rate_submit_per_ip=UNLIMITED,
        rate_upload_per_user=UNLIMITED,
        rate_bind_per_user=UNLIMITED,
    )


class ExceptionRecorder:
    """Keeps the traceback of an exception escaping the app, for the bug report of a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if "/services/" in f.filename or "/shared/" in f.filename]
            where = ours[-1] if ours else frames[-1]
            self.last = f"{type(exc).__name__}: {exc} at {where.filename}:{where.lineno}"
            raise


@dataclass
class Service:
    name: str
    client: httpx.AsyncClient
    recorder: ExceptionRecorder


@asynccontextmanager
async def running(name: str, app: FastAPI) -> AsyncIterator[Service]:
    """The app with its real lifespan behind httpx. Unlike the integration fixtures, an
    exception inside the app comes back as the 500 a real client would see."""
    recorder = ExceptionRecorder(app)
    transport = httpx.ASGITransport(app=recorder, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client,
    ):
        yield Service(name, client, recorder)


@dataclass
class Seeded:
    """Who acts, the identifiers path parameters are drawn from, and which of them each
    role may see (path parameter -> identifiers)."""

    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    pools: dict[str, list[str]] = field(default_factory=dict)
    visible: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # By what state they were left in: "waiting", "decided", "elsewhere", "midway",
    # "last_stage", "entered".
    applications: dict[str, str] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)


async def seed(
    intake: httpx.AsyncClient,
    verification: httpx.AsyncClient,
    engine: AsyncEngine,
    redis: Redis,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Seeded:
    """From empty: three citizens' applications, their cases in every state a clerk meets
    (open, claimed and waiting for the citizen, mid-procedure, at the last stage, decided,
    in another department), an attachment, notifications."""
    await empty_everything(engine, redis)
    pipeline = await build_pipeline(redis, sessionmaker)
    async with unit_of_work(sessionmaker) as session:
        await register_grid_worker(session, openid=GRID_OPENID, name="李网格", region_code="530129")
    citizen = await citizen_headers(intake, CITIZEN_OPENID)
    other = await citizen_headers(intake, OTHER_OPENID)
    grid = await citizen_headers(intake, GRID_OPENID)

    async def created(headers: dict[str, str], **overrides: object) -> str:
        response = await submit(intake, headers, **overrides)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    waiting = await created(citizen, item_code="medical_assistance")
    decided = await created(citizen, item_code="insurance_subsidy")
    elsewhere = await created(citizen, item_code="subsistence_allowance")
    midway = await created(other, item_code="medical_assistance")
    last_stage = await created(other, item_code="insurance_subsidy")
    entered = await created(
        grid,
        item_code="medical_assistance",
        applicant={"name": "王老五", "id_number": resident_id(), "phone": "13987654321"},
    )
    await pipeline.drain()

    clerk = await staff_headers(verification, sessionmaker, username="fuzz-clerk")
    supervisor = await staff_headers(
        verification,
        sessionmaker,
        username="fuzz-supervisor",
        role=Role.SUPERVISOR,
        region="530100",
    )
    admin = await staff_headers(
        verification,
        sessionmaker,
        username="fuzz-admin",
        role=Role.ADMIN,
        department=None,
        region="530000",
    )
    await staff_headers(verification, sessionmaker, username=SPARE_CLERK)
    await staff_headers(verification, sessionmaker, username=CIVIL_CLERK, department="civil")
    queue = (await verification.get("/api/v1/cases?limit=100", headers=admin)).json()["items"]
    case_of = {c["application_id"]: c["id"] for c in queue}
    assert len(case_of) == 6, queue

    async def post(case: str, action: str, **body: object) -> None:
        url = f"/api/v1/cases/{case_of[case]}/{action}"
        response = await verification.post(url, headers=clerk, json=body)
        assert response.status_code == 200, response.text

    for application in (waiting, decided, midway, last_stage):
        await post(application, "claim")
    await post(waiting, "request-info", message="请上传住院发票")
    await work_to_last_stage(verification, clerk, case_of[decided], sessionmaker)
    await post(decided, "decide", **APPROVAL)
    await post(midway, "advance")
    await post(midway, "field-check", **FIELD_CHECK)
    await work_to_last_stage(verification, clerk, case_of[last_stage], sessionmaker)
    await pipeline.drain()

    # The citizen answers with a photo; the clerk asks again, so a supplement is due.
    upload = await intake.post(
        f"/api/v1/applications/{waiting}/attachments",
        headers=citizen,
        files={"file": ("发票.jpg", JPEG, "image/jpeg")},
    )
    assert upload.status_code == 201, upload.text
    attachment = str(upload.json()["id"])
    answered = await intake.post(
        f"/api/v1/applications/{waiting}/supplements",
        headers=citizen,
        json={"message": "已上传发票", "attachment_ids": [attachment]},
    )
    assert answered.status_code == 200, answered.text
    await pipeline.drain()
    await post(waiting, "request-info", message="请再上传出院小结")
    await pipeline.drain()

    async with sessionmaker() as session:
        notifications = [
            str(n)
            for n in (await session.execute(text("SELECT id FROM notify.notifications")))
            .scalars()
            .all()
        ]
    medins_cases = {case_of[a] for a in (waiting, decided, midway, last_stage, entered)}
    applications = {
        "waiting": waiting,
        "decided": decided,
        "elsewhere": elsewhere,
        "midway": midway,
        "last_stage": last_stage,
        "entered": entered,
    }
    return Seeded(
        applications=applications,
        cases={state: case_of[application] for state, application in applications.items()},
        visible={
            CITIZEN: {
                "application_id": {waiting, decided, elsewhere},
                "attachment_id": {attachment},
            },
            GRID_WORKER: {"application_id": {entered}, "attachment_id": set()},
            CLERK: {"case_id": medins_cases},
            SUPERVISOR: {"case_id": medins_cases},
            ADMIN: {"case_id": set(case_of.values())},
        },
        headers={
            ANONYMOUS: {},
            CITIZEN: citizen,
            GRID_WORKER: grid,
            CLERK: clerk,
            SUPERVISOR: supervisor,
            ADMIN: admin,
        },
        pools={
            "application_id": [waiting, decided, elsewhere, midway, last_stage, entered],
            "case_id": list(case_of.values()),
            "attachment_id": [attachment],
            "username": [SPARE_CLERK, CIVIL_CLERK, "fuzz-clerk"],
            "notification_id": notifications,
        },
    )
