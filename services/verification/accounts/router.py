from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

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
from shared.auth import Role
from shared.db import DbSession
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"])

Username = Annotated[str, Path(min_length=1, max_length=50)]


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
async def disable_user(username: Username, admin: CurrentAdmin, session: DbSession) -> UserOut:
    return service.user_out(await service.disable_user(session, username, acting=admin))


@users_router.post("/{username}/enable", summary="重新启用账号")
async def enable_user(username: Username, _: CurrentAdmin, session: DbSession) -> UserOut:
    return service.user_out(await service.enable_user(session, username))


@users_router.post("/{username}/reset-password", summary="重置密码并解除锁定，旧凭证失效")
async def reset_password(
    username: Username, body: PasswordResetIn, _: CurrentAdmin, session: DbSession
) -> UserOut:
    return service.user_out(await service.reset_password(session, username, body.password))


# The app mounts one router per domain.
router = APIRouter()
router.include_router(auth_router)
router.include_router(users_router)
