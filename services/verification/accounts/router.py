from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from services.verification.accounts import service
from services.verification.accounts.dependencies import CurrentAdmin, Settings
from services.verification.accounts.schemas import (
    LoginIn,
    PasswordResetIn,
    StaffTokenOut,
    UserCreateIn,
    UserOut,
    UserPage,
)
from services.verification.models import StaffUser
from shared import staff_tokens
from shared.auth import Role
from shared.db import DbSession
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"])

Username = Annotated[str, Path(min_length=1, max_length=50)]


async def _announce_token_state(request: Request, user: StaffUser) -> None:
    """Tell the other services at once (the worker's sync would within seconds)."""
    await staff_tokens.publish(
        request.app.state.redis, str(user.id), user.token_version, user.disabled
    )


@auth_router.post("/login", summary="工作人员登录")
async def login(body: LoginIn, session: DbSession, settings: Settings) -> StaffTokenOut:
    return await service.login(session, settings, body.username, body.password)


@users_router.get("", summary="工作人员账号列表（仅管理员）")
async def list_users(
    _: CurrentAdmin,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> UserPage:
    return await service.list_users(session, limit=limit, cursor=cursor)


@users_router.post("", status_code=201, summary="创建工作人员账号（仅管理员）")
async def create_user(body: UserCreateIn, _: CurrentAdmin, session: DbSession) -> UserOut:
    user = await service.create_user(
        session,
        username=body.username,
        password=body.password,
        role=Role(body.role),
        department=body.department,
        region_code=body.region_code,
        display_name=body.display_name,
    )
    return service.user_out(user)


@users_router.post("/{username}/disable", summary="停用账号，已签发的登录凭证随即失效")
async def disable_user(
    username: Username, admin: CurrentAdmin, session: DbSession, request: Request
) -> UserOut:
    user = await service.disable_user(session, username, acting=admin)
    await _announce_token_state(request, user)
    return service.user_out(user)


@users_router.post("/{username}/enable", summary="重新启用账号")
async def enable_user(
    username: Username, _: CurrentAdmin, session: DbSession, request: Request
) -> UserOut:
    user = await service.enable_user(session, username)
    await _announce_token_state(request, user)
    return service.user_out(user)


@users_router.post("/{username}/reset-password", summary="重置密码并解除锁定，旧凭证失效")
async def reset_password(
    username: Username,
    body: PasswordResetIn,
    _: CurrentAdmin,
    session: DbSession,
    request: Request,
) -> UserOut:
    user = await service.reset_password(session, username, body.password)
    await _announce_token_state(request, user)
    return service.user_out(user)


# The app mounts one router per domain.
router = APIRouter()
router.include_router(auth_router)
router.include_router(users_router)
