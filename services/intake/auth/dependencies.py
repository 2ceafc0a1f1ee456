from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.auth.repository import active_grid_worker
from services.intake.models import GridWorker
from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, bearer_token, decode_token
from shared.db import AutocommitConnection, DbSession, session_on
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
        await _check_grid_worker(request, session, principal)
    return principal


def _token_principal(settings: IntakeSettings, authorization: str | None) -> Principal:
    principal = decode_token(settings, bearer_token(authorization), audience=Audience.CITIZEN)
    if principal.role not in (Role.CITIZEN, Role.GRID_WORKER):
        raise Forbidden()
    return principal


async def _check_grid_worker(request: Request, session: AsyncSession, principal: Principal) -> None:
    worker = await active_grid_worker(session, principal.subject)
    if worker is None:
        raise Unauthorized("网格员账号已停用", code="account_disabled")
    request.state.grid_worker = worker  # for GridWorkerName, without a second query


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


async def _current_submitter(
    request: Request,
    connection: AutocommitConnection,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    settings: IntakeSettings = request.app.state.settings
    principal = _token_principal(settings, authorization)
    if principal.role is Role.GRID_WORKER:
        async with session_on(connection) as session:
            await _check_grid_worker(request, session, principal)
    return principal


CurrentSubmitter = Annotated[Principal, Depends(_current_submitter)]
"""CurrentCitizen for a submission: its grid-worker check runs on the submission's own
autocommit connection, so the request holds one pooled connection, not two."""


def _grid_worker_name(request: Request, principal: Principal) -> str | None:
    """The acting grid worker's name (None for a citizen acting for himself), from the row
    CurrentSubmitter checked."""
    if principal.role is not Role.GRID_WORKER:
        return None
    worker: GridWorker = request.state.grid_worker
    return worker.name


@dataclass(frozen=True, slots=True)
class Submission:
    """What a submission needs besides its body and session, as one dependency: the
    busiest endpoint solved fifteen dependencies a request when each of these was its own
    (five now)."""

    principal: Principal
    settings: IntakeSettings
    cipher: PiiCipher
    limiter: RateLimiter
    client_ip: str
    grid_worker_name: str | None


async def _submission(request: Request, principal: CurrentSubmitter) -> Submission:
    settings: IntakeSettings = request.app.state.settings
    return Submission(
        principal=principal,
        settings=settings,
        cipher=cipher_for(settings),
        limiter=request.app.state.rate_limiter,
        client_ip=client_ip(request, settings),
        grid_worker_name=_grid_worker_name(request, principal),
    )


SubmissionContext = Annotated[Submission, Depends(_submission)]
