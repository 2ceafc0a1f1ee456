from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.intake.auth.repository import active_grid_worker
from services.intake.models import GridWorker
from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, bearer_token, decode_token
from shared.db import DbSession
from shared.errors import Forbidden, Unauthorized
from shared.objectstore import DirectoryObjectStore
from shared.pii import PiiCipher, cipher_for
from shared.ratelimit import RateLimiter


async def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


Settings = Annotated[IntakeSettings, Depends(_settings)]


async def _cipher(settings: Settings) -> PiiCipher:
    return cipher_for(settings)


Cipher = Annotated[PiiCipher, Depends(_cipher)]


async def _rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


Limiter = Annotated[RateLimiter, Depends(_rate_limiter)]


async def _object_store(request: Request) -> DirectoryObjectStore:
    store: DirectoryObjectStore = request.app.state.object_store
    return store


ObjectStore = Annotated[DirectoryObjectStore, Depends(_object_store)]


def client_ip(request: Request, settings: IntakeSettings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


async def _client_ip(request: Request, settings: Settings) -> str:
    return client_ip(request, settings)


ClientIp = Annotated[str, Depends(_client_ip)]


async def _principal(
    request: Request, settings: IntakeSettings, session: AsyncSession, authorization: str | None
) -> Principal:
    principal = _token_principal(settings, authorization)
    if principal.role is Role.GRID_WORKER:
        await _active_grid_worker(session, principal)
    return principal


def _token_principal(settings: IntakeSettings, authorization: str | None) -> Principal:
    principal = decode_token(settings, bearer_token(authorization), audience=Audience.CITIZEN)
    if principal.role not in (Role.CITIZEN, Role.GRID_WORKER):
        raise Forbidden()
    return principal


async def _active_grid_worker(session: AsyncSession, principal: Principal) -> GridWorker:
    worker = await active_grid_worker(session, principal.subject)
    if worker is None:
        raise Unauthorized("网格员账号已停用", code="account_disabled")
    return worker


# The settings are read off the app here, not through the Settings dependency: FastAPI
# solves every dependency of every request anew, even one it has already solved (its
# cache spares only the call), so each costs every request that uses it.
async def _current_citizen(
    request: Request,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return await _principal(request, request.app.state.settings, session, authorization)


CurrentCitizen = Annotated[Principal, Depends(_current_citizen)]
"""A citizen or a grid worker (who acts for citizens)."""


@dataclass(frozen=True, slots=True)
class Submission:
    """All a submission needs besides its body, as one dependency. FastAPI's cost is per
    dependency and per declared parameter, on every request: the busiest endpoint solved
    fifteen dependencies a request when each of these was its own, and five with two
    header parameters before this one read its headers itself."""

    principal: Principal
    settings: IntakeSettings
    cipher: PiiCipher
    limiter: RateLimiter
    client_ip: str
    grid_worker_name: str | None  # the acting grid worker (None: a citizen for himself)
    # Connections that commit each statement on its own (see `shared.db.autocommit_engine`):
    # the submission is one statement. Taken by the endpoint, not by a dependency: a
    # generator dependency costs a request more than the connection.
    autocommit: AsyncEngine
    idempotency_key: str | None


async def _submission(request: Request) -> Submission:
    settings: IntakeSettings = request.app.state.settings
    principal = _token_principal(settings, request.headers.get("authorization"))
    worker_name = None
    if principal.role is Role.GRID_WORKER:
        async with request.app.state.sessionmaker() as session:
            worker_name = (await _active_grid_worker(session, principal)).name
    return Submission(
        principal=principal,
        settings=settings,
        cipher=cipher_for(settings),
        limiter=request.app.state.rate_limiter,
        client_ip=client_ip(request, settings),
        grid_worker_name=worker_name,
        autocommit=request.app.state.autocommit_engine,
        idempotency_key=request.headers.get("idempotency-key"),
    )


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "title": name},
        "description": description,
    }


# The headers `_submission` reads, for the OpenAPI document (as declared parameters they
# would be read for it).
SUBMISSION_HEADERS = [
    _header("Idempotency-Key", "每份新申请一个唯一值；重试时原样带上"),
    _header("Authorization", "Bearer 令牌（微信登录后获得）"),
]


SubmissionContext = Annotated[Submission, Depends(_submission)]
