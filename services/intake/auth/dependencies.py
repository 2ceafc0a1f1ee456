from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.auth.repository import active_grid_worker
from services.intake.models import GridWorker
from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, bearer_token, decode_token
from shared.db import AutocommitSession, DbSession
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


async def _client_ip(request: Request, settings: Settings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


ClientIp = Annotated[str, Depends(_client_ip)]


async def _principal(
    request: Request, settings: IntakeSettings, session: AsyncSession, authorization: str | None
) -> Principal:
    principal = decode_token(settings, bearer_token(authorization), audience=Audience.CITIZEN)
    if principal.role not in (Role.CITIZEN, Role.GRID_WORKER):
        raise Forbidden()
    if principal.role is Role.GRID_WORKER:
        worker = await active_grid_worker(session, principal.subject)
        if worker is None:
            raise Unauthorized("网格员账号已停用", code="account_disabled")
        request.state.grid_worker = worker  # for GridWorkerName, without a second query
    return principal


async def _current_citizen(
    request: Request,
    settings: Settings,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return await _principal(request, settings, session, authorization)


CurrentCitizen = Annotated[Principal, Depends(_current_citizen)]
"""A citizen or a grid worker (who acts for citizens)."""


async def _current_submitter(
    request: Request,
    settings: Settings,
    session: AutocommitSession,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return await _principal(request, settings, session, authorization)


CurrentSubmitter = Annotated[Principal, Depends(_current_submitter)]
"""CurrentCitizen for a submission: its grid-worker check runs on the submission's own
autocommit session, so the request holds one pooled connection, not two."""


async def _grid_worker_name(request: Request, principal: CurrentSubmitter) -> str | None:
    if principal.role is not Role.GRID_WORKER:
        return None
    worker: GridWorker = request.state.grid_worker
    return worker.name


GridWorkerName = Annotated[str | None, Depends(_grid_worker_name)]
"""The acting grid worker's name (None for a citizen acting for himself), from the row
CurrentSubmitter checked."""
