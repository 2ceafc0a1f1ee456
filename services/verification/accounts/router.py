from __future__ import annotations

from fastapi import APIRouter

from services.verification.accounts import service
from services.verification.accounts.dependencies import Settings
from services.verification.accounts.schemas import LoginIn, StaffTokenOut
from shared.db import DbSession

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", summary="工作人员登录")
async def login(body: LoginIn, session: DbSession, settings: Settings) -> StaffTokenOut:
    return await service.login(session, settings, body.username, body.password)
