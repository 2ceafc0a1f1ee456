from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from services.intake.applications import service
from services.intake.applications.schemas import (
    ApplicationCreate,
    ApplicationCreated,
    ApplicationDetail,
    ApplicationPage,
)
from services.intake.auth.dependencies import CurrentCitizen, Settings
from shared.db import DbSession
from shared.errors import InvalidInput
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.pii import cipher_for

router = APIRouter(prefix="/applications", tags=["applications"])


@router.post(
    "",
    status_code=201,
    response_model=ApplicationCreated,
    summary="提交救助申请",
    responses={409: {"description": "同一事项已有正在办理的申请"}},
)
async def submit_application(
    body: ApplicationCreate,
    principal: CurrentCitizen,
    session: DbSession,
    settings: Settings,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="每份新申请一个唯一值；重试时原样带上"),
    ] = None,
) -> Any:
    if not idempotency_key or not 8 <= len(idempotency_key) <= 100:
        raise InvalidInput(
            "请求头缺少 Idempotency-Key（8 到 100 个字符）", code="idempotency_key_required"
        )
    status_code, payload = await service.submit(
        session,
        principal=principal,
        body=body,
        idempotency_key=idempotency_key,
        cipher=cipher_for(settings),
    )
    return JSONResponse(payload, status_code=status_code)


@router.get("", summary="我的申请")
async def list_applications(
    principal: CurrentCitizen,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ApplicationPage:
    return await service.list_mine(session, principal, limit=limit, cursor=cursor)


@router.get("/{application_id}", summary="申请详情与办理进度")
async def get_application(
    application_id: uuid.UUID, principal: CurrentCitizen, session: DbSession
) -> ApplicationDetail:
    return await service.get_mine(session, principal, application_id)
