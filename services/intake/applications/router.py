from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, UploadFile
from fastapi.responses import JSONResponse

from services.intake.applications import actions, attachments, service
from services.intake.applications.schemas import (
    ApplicationCreate,
    ApplicationCreated,
    ApplicationDetail,
    ApplicationPage,
    AttachmentOut,
    RatingIn,
    SupplementIn,
    WithdrawIn,
)
from services.intake.auth.dependencies import (
    SUBMISSION_HEADERS,
    CurrentCitizen,
    Limiter,
    ObjectStore,
    Settings,
    SubmissionContext,
)
from shared.db import DbSession
from shared.errors import InvalidInput
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.ratelimit import Limit

router = APIRouter(prefix="/applications", tags=["applications"])

ApplicationId = Annotated[uuid.UUID, "application id"]


@router.post(
    "",
    status_code=201,
    response_model=ApplicationCreated,
    summary="提交救助申请（本人申报或网格员代报）",
    responses={409: {"description": "同一事项已有正在办理的申请"}},
    openapi_extra={"parameters": SUBMISSION_HEADERS},
)
async def submit_application(body: ApplicationCreate, submission: SubmissionContext) -> Any:
    key = submission.idempotency_key
    if not key or not 8 <= len(key) <= 100:
        raise InvalidInput(
            "请求头缺少 Idempotency-Key（8 到 100 个字符）", code="idempotency_key_required"
        )
    settings = submission.settings
    await submission.limiter.hit_all(
        [
            Limit(settings.rate_submit_per_user, "submit-user", submission.principal.subject),
            Limit(settings.rate_submit_per_ip, "submit-ip", submission.client_ip),
        ]
    )
    async with submission.autocommit.connect() as connection:
        status_code, payload = await service.submit(
            connection,
            principal=submission.principal,
            body=body,
            idempotency_key=key,
            cipher=submission.cipher,
            grid_worker_name=submission.grid_worker_name,
        )
    return JSONResponse(payload, status_code=status_code)


@router.get("", summary="我的申请（含网格员为我代报的）")
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


@router.post("/{application_id}/supplements", summary="补充材料（答复工作人员的补充要求）")
async def supplement(
    application_id: uuid.UUID, body: SupplementIn, principal: CurrentCitizen, session: DbSession
) -> ApplicationDetail:
    await actions.supplement(session, principal, application_id, body)
    await session.flush()
    return await service.get_mine(session, principal, application_id)


@router.post("/{application_id}/withdraw", summary="撤回申请（作出决定前）")
async def withdraw(
    application_id: uuid.UUID, body: WithdrawIn, principal: CurrentCitizen, session: DbSession
) -> ApplicationDetail:
    await actions.withdraw(session, principal, application_id, body)
    await session.flush()
    return await service.get_mine(session, principal, application_id)


@router.post("/{application_id}/rating", summary="评价（好差评，办结后一次）")
async def rate(
    application_id: uuid.UUID, body: RatingIn, principal: CurrentCitizen, session: DbSession
) -> ApplicationDetail:
    await actions.rate(session, principal, application_id, body)
    await session.flush()
    return await service.get_mine(session, principal, application_id)


@router.post(
    "/{application_id}/attachments",
    status_code=201,
    summary="上传证明材料（照片或 PDF）",
    responses={413: {"description": "文件过大"}, 415: {"description": "文件类型不支持"}},
)
async def upload_attachment(
    application_id: uuid.UUID,
    file: UploadFile,
    principal: CurrentCitizen,
    session: DbSession,
    settings: Settings,
    limiter: Limiter,
    store: ObjectStore,
) -> AttachmentOut:
    await limiter.hit(settings.rate_upload_per_user, "upload-user", principal.subject)
    data = await file.read(settings.attachment_max_bytes + 1)
    return await attachments.add(
        session,
        store,
        principal,
        application_id,
        data=data,
        filename=file.filename,
        max_bytes=settings.attachment_max_bytes,
        max_count=settings.attachments_per_application,
    )


@router.get(
    "/{application_id}/attachments/{attachment_id}",
    summary="下载证明材料",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "application/pdf": {}}}},
)
async def download_attachment(
    application_id: uuid.UUID,
    attachment_id: uuid.UUID,
    principal: CurrentCitizen,
    session: DbSession,
    store: ObjectStore,
) -> Response:
    attachment, data = await attachments.read(
        session, store, principal, application_id, attachment_id
    )
    return Response(
        content=data,
        media_type=attachment.content_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": "inline",
        },
    )
