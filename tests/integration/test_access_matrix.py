"""Who may call what: every endpoint of intake, verification and notify for each of nine
principals (the table is `access_matrix_cases.py`), forged and stale tokens, and whether
authorization runs before the body is validated. Each cell is its own test.

The world — citizen A's application with an attachment, routed, its case claimed by the
medins clerk of 530129; citizen B's application; the staff accounts; a notification and a
reminder — is built once per module, by the first cell that runs: building it per cell (ten
argon2-hashed staff accounts, the pipeline) would take minutes. So this module replaces the
autouse `clean` of conftest: the tables are truncated before the module and after it, and
between cells only the rate-limit counters are cleared. A mutating endpoint acts on a fresh
object made for the cell (an application or case in the state where the allowed caller
succeeds), except where the answer cannot depend on what earlier cells did: the admin's
account actions on `matrix-victim`, `reveal` (it only adds an audit entry), and `replay`
(the world's notification is made a dead letter again before each cell).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake.app import create_app as create_intake
from services.intake.auth.service import register_grid_worker
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.reminders.service import remind_due_soon
from services.notify.settings import NotifySettings
from services.verification.accounts.repository import token_states
from services.verification.accounts.service import create_user, disable_user
from services.verification.app import create_app as create_verification
from services.verification.settings import VerificationSettings
from shared import staff_tokens
from shared.auth import ALGORITHM, Audience, Principal, Role, issue_token
from shared.db import unit_of_work
from shared.redis import create_redis
from shared.settings import ServiceSettings
from tests.conftest import Infra
from tests.factories import JPEG, application_body, resident_id
from tests.integration.access_matrix_cases import (
    BINDING_CASES,
    ENDPOINTS,
    EXTRA_TOKEN_VARIANTS,
    FINDINGS,
    ORDER_CASES,
    TOKEN_ENDPOINTS,
    TOKEN_FINDINGS,
    TOKEN_VARIANTS,
    BindingCase,
    Endpoint,
    Fresh,
    OrderCase,
)
from tests.integration.conftest import (
    PASSWORD,
    Pipeline,
    citizen_headers,
    empty_everything,
    staff_headers,
    submit,
)

Sessions = async_sessionmaker[AsyncSession]
OTHER_KEY = "another-secret-that-is-long-enough-for-hs256"
ID_PATTERN = re.compile(r"\{(app|att|att_b|case|case_att|case_att_b|notification|user)\}")


# --- the world -------------------------------------------------------------------------------


@dataclass
class Services:
    intake: httpx.AsyncClient
    verification: httpx.AsyncClient
    notify: httpx.AsyncClient

    def client(self, service: str) -> httpx.AsyncClient:
        clients = {"intake": self.intake, "verification": self.verification}
        return clients.get(service, self.notify)


@dataclass
class World:
    services: Services
    headers: dict[str, dict[str, str]]
    ids: dict[str, str]
    applicant: dict[str, str]  # citizen A's applicant, whose ID number and phone must not leak
    filler: dict[str, str]  # citizen C, who owns the fresh cases of verification cells
    refresh_token: str  # citizen A's, never used
    disabled_admin: dict[str, str]  # issued before the account was disabled


async def _truncate(engine: AsyncEngine, redis_url: str) -> None:
    redis = create_redis(redis_url)
    try:
        await empty_everything(engine, redis)
    finally:
        await redis.aclose()


@asynccontextmanager
async def _serve(app: FastAPI, host: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}") as c,
    ):
        yield c


@pytest.fixture(scope="module")
async def services(infra: Infra, engine: AsyncEngine) -> AsyncIterator[Services]:
    await _truncate(engine, infra.redis_url)
    async with (
        _serve(create_intake(IntakeSettings()), "intake") as intake,
        _serve(create_verification(VerificationSettings()), "verification") as verification,
        _serve(create_notify(NotifySettings()), "notify") as notify,
    ):
        yield Services(intake, verification, notify)
    await _truncate(engine, infra.redis_url)


@pytest.fixture(autouse=True)
async def clean(redis: Redis) -> None:
    """Replaces conftest's truncation (see the module docstring). A module's worth of logins
    and submissions would use up the abuse limits, which are not what this module tests."""
    keys = [key async for key in redis.scan_iter(match="relief:{ratelimit}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(scope="module")
def built() -> dict[str, World]:
    return {}


@pytest.fixture
async def world(
    services: Services, built: dict[str, World], pipeline: Pipeline, sessionmaker: Sessions
) -> World:
    if "world" not in built:
        built["world"] = await _build(services, pipeline, sessionmaker)
    return built["world"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ok(call: Awaitable[httpx.Response]) -> dict[str, Any]:
    response = await call
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


async def _submit(intake: httpx.AsyncClient, citizen: dict[str, str], **overrides: Any) -> str:
    response = await submit(intake, citizen, **overrides)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _upload(intake: httpx.AsyncClient, citizen: dict[str, str], app: str) -> str:
    url = f"/api/v1/applications/{app}/attachments"
    files = {"file": ("住院发票.jpg", JPEG, "image/jpeg")}
    return str((await _ok(intake.post(url, headers=citizen, files=files)))["id"])


async def _case_of(sessionmaker: Sessions, app: str) -> str:
    async with sessionmaker() as session:
        case_id = await session.scalar(
            text("SELECT id FROM verification.cases WHERE application_id = :app"), {"app": app}
        )
    assert case_id is not None, f"no case for application {app}"
    return str(case_id)


async def _build(services: Services, pipeline: Pipeline, sessionmaker: Sessions) -> World:
    intake, verification = services.intake, services.verification
    login_a = await _ok(intake.post("/api/v1/auth/wechat", json={"code": "dev:matrix-a"}))
    async with unit_of_work(sessionmaker) as session:
        await register_grid_worker(
            session, openid="matrix-grid", name="李网格", region_code="530129"
        )

    async def staff(username: str, **scope: Any) -> dict[str, str]:
        return await staff_headers(verification, sessionmaker, username=username, **scope)

    province = {"role": Role.ADMIN, "department": None, "region": "530000"}
    headers = {
        "anonymous": {},
        "citizen_a": _bearer(login_a["access_token"]),
        "citizen_b": await citizen_headers(intake, "matrix-b"),
        "grid_worker": await citizen_headers(intake, "matrix-grid"),
        "clerk_civil": await staff("matrix-civil", department="civil"),
        "clerk_other_county": await staff("matrix-county", region="532901"),
        "clerk": await staff("matrix-clerk"),
        "supervisor": await staff("matrix-supervisor", role=Role.SUPERVISOR, region="530100"),
        "admin": await staff("matrix-admin", **province),
    }
    disabled_admin = await staff("matrix-disabled", **province)
    async with unit_of_work(sessionmaker) as session:
        for username in ("matrix-login", "matrix-clerk-2", "matrix-victim"):
            await create_user(
                session,
                username=username,
                password=PASSWORD,
                role=Role.CLERK,
                department="medins",
                region_code="530129",
            )
        await disable_user(session, "matrix-disabled")
    # What the verification worker's periodic sync does: other services learn of it.
    async with sessionmaker() as session:
        states = await token_states(session)
    sync = create_redis(ServiceSettings().require_redis_url())
    try:
        await staff_tokens.publish_all(sync, states)
    finally:
        await sync.aclose()

    # A birth date no factory-made ID has: no other application is a duplicate of A's.
    applicant = {
        "name": "司马光明",
        "id_number": resident_id(birth="19610705"),
        "phone": "13912340001",
    }
    citizen_a, citizen_b = headers["citizen_a"], headers["citizen_b"]
    app = await _submit(intake, citizen_a, applicant=applicant)
    att = await _upload(intake, citizen_a, app)
    app_b = await _submit(intake, citizen_b)
    att_b = await _upload(intake, citizen_b, app_b)
    await pipeline.drain()
    case, case_b = await _case_of(sessionmaker, app), await _case_of(sessionmaker, app_b)
    clerk = headers["clerk"]
    [case_att] = (await _ok(verification.get(f"/api/v1/cases/{case}", headers=clerk)))[
        "attachments"
    ]
    [case_att_b] = (await _ok(verification.get(f"/api/v1/cases/{case_b}", headers=clerk)))[
        "attachments"
    ]
    await _ok(verification.post(f"/api/v1/cases/{case}/claim", headers=clerk))
    await pipeline.drain()
    # 15 days left: "due soon" within 30 days gives the clerk a reminder of A's case.
    await remind_due_soon(sessionmaker, before=timedelta(days=30), zone=ZoneInfo("Asia/Shanghai"))
    async with sessionmaker() as session:
        notification = await session.scalar(
            text(
                "SELECT id FROM notify.notifications WHERE application_id = :app "
                "ORDER BY created_at LIMIT 1"
            ),
            {"app": app},
        )
    assert notification is not None, "the pipeline made no notification for A"
    return World(
        services=services,
        headers=headers,
        ids={
            "app": app,
            "att": att,
            "att_b": att_b,
            "case": case,
            "case_att": str(case_att["id"]),
            "case_att_b": str(case_att_b["id"]),
            "notification": str(notification),
            "user": "matrix-victim",
        },
        applicant=applicant,
        filler=await citizen_headers(intake, "matrix-c"),
        refresh_token=login_a["refresh_token"],
        disabled_admin=disabled_admin,
    )


async def _app(world: World, pipeline: Pipeline, sessionmaker: Sessions) -> dict[str, str]:
    return {"app": await _submit(world.services.intake, world.headers["citizen_a"])}


async def _closed_app(world: World, pipeline: Pipeline, sessionmaker: Sessions) -> dict[str, str]:
    citizen_a = world.headers["citizen_a"]
    app = await _submit(world.services.intake, citizen_a)
    url = f"/api/v1/applications/{app}/withdraw"
    await _ok(world.services.intake.post(url, headers=citizen_a, json={}))
    return {"app": app}


async def _app_needing_info(
    world: World, pipeline: Pipeline, sessionmaker: Sessions
) -> dict[str, str]:
    verification, clerk = world.services.verification, world.headers["clerk"]
    app = await _submit(world.services.intake, world.headers["citizen_a"])
    await pipeline.drain()
    url = f"/api/v1/cases/{await _case_of(sessionmaker, app)}"
    await _ok(verification.post(f"{url}/claim", headers=clerk))
    await _ok(verification.post(f"{url}/request-info", headers=clerk, json={"message": "请补充"}))
    await pipeline.drain()
    return {"app": app}


async def _case(
    world: World, pipeline: Pipeline, sessionmaker: Sessions, *, claimed: bool, advanced: bool
) -> dict[str, str]:
    verification, clerk = world.services.verification, world.headers["clerk"]
    app = await _submit(world.services.intake, world.filler)
    await pipeline.drain()
    url = f"/api/v1/cases/{await _case_of(sessionmaker, app)}"
    if claimed:
        await _ok(verification.post(f"{url}/claim", headers=clerk))
    if advanced:
        passed = await _ok(verification.post(f"{url}/advance", headers=clerk, json={}))
        assert passed["status"] == "field_check"
    return {"case": url.rsplit("/", 1)[-1]}


async def _dead_notification(
    world: World, pipeline: Pipeline, sessionmaker: Sessions
) -> dict[str, str]:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            text("UPDATE notify.notifications SET status = 'dead' WHERE id = :id"),
            {"id": world.ids["notification"]},
        )
    return {}


async def _refresh_token(
    world: World, pipeline: Pipeline, sessionmaker: Sessions
) -> dict[str, str]:
    code = f"dev:matrix-{uuid.uuid4().hex}"
    login = await _ok(world.services.intake.post("/api/v1/auth/wechat", json={"code": code}))
    return {"refresh_token": login["refresh_token"]}


# A new object for one cell, in the state where the allowed caller's call succeeds.
FRESH: dict[Fresh, Callable[[World, Pipeline, Sessions], Awaitable[dict[str, str]]]] = {
    Fresh.APP_SUBMITTED: _app,
    Fresh.APP_CLOSED: _closed_app,
    Fresh.APP_NEEDS_INFO: _app_needing_info,
    Fresh.CASE_OPEN: partial(_case, claimed=False, advanced=False),
    Fresh.CASE_CLAIMED: partial(_case, claimed=True, advanced=False),
    Fresh.CASE_IN_FIELD_CHECK: partial(_case, claimed=True, advanced=True),
    Fresh.DEAD_NOTIFICATION: _dead_notification,
    Fresh.REFRESH_TOKEN: _refresh_token,
}


# --- the matrix ------------------------------------------------------------------------------


def _fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, values) for value in template]
    return template


async def _call(
    world: World, endpoint: Endpoint, headers: dict[str, str], values: dict[str, str]
) -> httpx.Response:
    extra: dict[str, Any] = {}
    if endpoint.json is not None:
        extra["json"] = _fill(endpoint.json, values)
    if endpoint.upload:
        extra["files"] = {"file": ("住院发票.jpg", JPEG, "image/jpeg")}
    if endpoint.path == "/api/v1/applications" and endpoint.method == "POST":
        headers = {**headers, "Idempotency-Key": f"matrix-{values['unique']}"}
    return await world.services.client(endpoint.service).request(
        endpoint.method, _fill(endpoint.path, values), headers=headers, **extra
    )


def _cell_id(endpoint: Endpoint, principal: str) -> str:
    status, listed = endpoint.expected()[principal]
    shown = {True: " listed", False: " not listed", None: ""}[listed]
    return f"{endpoint.name} {principal} -> {status}{shown}"


def _cells() -> list[Any]:
    cells = []
    for endpoint in ENDPOINTS:
        for principal in endpoint.expected():
            finding = FINDINGS.get(f"{endpoint.name} {principal}")
            marks = [pytest.mark.xfail(strict=True, reason=finding)] if finding else []
            cells.append(
                pytest.param(endpoint, principal, id=_cell_id(endpoint, principal), marks=marks)
            )
    return cells


@pytest.mark.parametrize(("endpoint", "principal"), _cells())
async def test_access(
    endpoint: Endpoint,
    principal: str,
    world: World,
    pipeline: Pipeline,
    sessionmaker: Sessions,
) -> None:
    status, listed = endpoint.expected()[principal]
    values = {
        **world.ids,
        **(await FRESH[endpoint.fresh](world, pipeline, sessionmaker) if endpoint.fresh else {}),
        "unique": uuid.uuid4().hex,
        "id_number": resident_id(),
    }
    response = await _call(world, endpoint, world.headers[principal], values)
    assert response.status_code == status, response.text[:2000]
    if response.is_client_error:
        assert isinstance(response.json()["error"]["code"], str), response.text[:2000]
    if status == 401:
        # No token at all, or one of the other audience (citizen <-> staff).
        reason = "unauthorized" if principal == "anonymous" else "token_invalid"
        assert response.json()["error"]["code"] == reason, response.text

    if listed is not None:
        target = values[endpoint.lists or ""]
        assert (target in response.text) is listed, response.text[:2000]
    if not (endpoint.reveals_pii and response.is_success):
        for secret in (world.applicant["id_number"], world.applicant["phone"]):
            assert secret.encode() not in response.content
    if endpoint.public:
        assert world.applicant["name"].encode() not in response.content

    if status == 404 and ID_PATTERN.search(endpoint.path):
        # Indistinguishable from an id that does not exist: existence does not leak.
        last = ID_PATTERN.findall(endpoint.path)[-1]
        unknown = await _call(
            world, endpoint, world.headers[principal], {**values, last: str(uuid.uuid4())}
        )
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == response.json()["error"]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", maxsplit=1)[0])


@pytest.mark.parametrize("service", ["intake", "verification", "notify"])
async def test_every_documented_operation_has_a_row(service: str, services: Services) -> None:
    paths = (await services.client(service).get("/openapi.json")).json()["paths"]
    documented = {
        (method.upper(), _shape(path))
        for path, operations in paths.items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    rows = {(e.method, _shape(e.path)) for e in ENDPOINTS if e.service == service}
    assert documented - rows == set()


# --- what a binding opens --------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=f"intake {c.method} {c.path} citizen_d_bound -> {c.status}"
            + {True: " listed", False: " not listed", None: ""}[c.listed],
        )
        for c in BINDING_CASES
    ],
)
async def test_a_binding_opens_only_what_grid_workers_entered(
    case: BindingCase, world: World
) -> None:
    intake = world.services.intake
    person = {"name": "欧阳晓", "id_number": resident_id(), "phone": "13700001111"}
    own = await _submit(intake, world.headers["citizen_a"], applicant=person)
    own_att = await _upload(intake, world.headers["citizen_a"], own)
    entered = await _submit(
        intake,
        world.headers["grid_worker"],
        **application_body(item_code="insurance_subsidy", applicant=person),
    )
    citizen_d = await citizen_headers(intake, f"matrix-d-{uuid.uuid4().hex}")
    await _ok(intake.post("/api/v1/me/bindings", headers=citizen_d, json=person))

    path = case.path.format(own=own, own_att=own_att, entered=entered)
    body: dict[str, Any] | None = {} if case.method == "POST" else None
    response = await intake.request(case.method, path, headers=citizen_d, json=body)
    assert response.status_code == case.status, response.text[:2000]
    if case.listed is not None:
        assert (own in response.text) is case.listed


# --- forged and stale tokens -----------------------------------------------------------------


def _token_cells() -> list[Any]:
    cells = []
    for service, (path, principal) in TOKEN_ENDPOINTS.items():
        variants = {**TOKEN_VARIANTS, **EXTRA_TOKEN_VARIANTS[service]}
        for variant, (status, code) in variants.items():
            finding = TOKEN_FINDINGS.get(f"{service} {variant}")
            cells.append(
                pytest.param(
                    service,
                    variant,
                    status,
                    code,
                    id=f"{service} GET {path} {principal} {variant} token -> {status}",
                    marks=[pytest.mark.xfail(strict=True, reason=finding)] if finding else [],
                )
            )
    return cells


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    # A character in the middle: the last one may only carry padding bits.
    i = len(signature) // 2
    flipped = signature[:i] + ("A" if signature[i] != "A" else "B") + signature[i + 1 :]
    return f"{header}.{payload}.{flipped}"


def _unsigned(token: str) -> str:
    """The same claims under `{"alg": "none"}` and no signature."""
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


def _forged(world: World, service: str, variant: str) -> str:
    _, principal = TOKEN_ENDPOINTS[service]
    token = world.headers[principal]["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    settings: ServiceSettings = IntakeSettings() if service == "intake" else NotifySettings()
    audience = Audience(claims["aud"])
    issued_to = Principal(
        subject=claims["sub"],
        role=Role(claims["role"]),
        department=claims.get("dept"),
        region=claims.get("region"),
        token_version=claims["ver"],
    )
    forgeries: dict[str, Callable[[], str]] = {
        "genuine": lambda: token,
        "tampered_signature": lambda: _tampered(token),
        "expired": lambda: issue_token(settings, issued_to, audience=audience, ttl_seconds=-10),
        "other_key": lambda: jwt.encode(claims, OTHER_KEY, ALGORITHM),
        "alg_none": lambda: _unsigned(token),
        "refresh_type": lambda: issue_token(
            settings, issued_to, audience=audience, ttl_seconds=300, token_type="refresh"
        ),
        "refresh_token_as_bearer": lambda: world.refresh_token,
        "disabled_account": lambda: world.disabled_admin["Authorization"].split()[1],
    }
    return forgeries[variant]()


@pytest.mark.parametrize(("service", "variant", "status", "code"), _token_cells())
async def test_forged_and_stale_tokens(
    service: str, variant: str, status: int, code: str | None, world: World
) -> None:
    path, _ = TOKEN_ENDPOINTS[service]
    token = _forged(world, service, variant)
    response = await world.services.client(service).get(path, headers=_bearer(token))
    assert response.status_code == status, response.text[:2000]
    if code is not None:
        assert response.json()["error"]["code"] == code, response.text


# --- authorization before body validation ----------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=f"{c.service} {c.method} {c.path} {c.principal} {c.name} -> {c.status}")
        for c in ORDER_CASES
    ],
)
async def test_authorization_runs_before_body_validation(case: OrderCase, world: World) -> None:
    headers = {**world.headers[case.principal], "Content-Type": "application/json"}
    response = await world.services.client(case.service).request(
        case.method, case.path.format_map(world.ids), headers=headers, content=case.content
    )
    assert response.status_code == case.status, response.text
