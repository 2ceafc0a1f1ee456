from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.verification.accounts.dependencies import CurrentStaff
from services.verification.cases import service
from services.verification.cases.schemas import CaseDetail, CasePage, DecideIn, RequestInfoIn
from shared.db import DbSession
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/cases", tags=["cases"])


@router.get("", summary="我的办理队列（按时限排序）")
async def list_cases(
    user: CurrentStaff,
    session: DbSession,
    status: Annotated[list[str] | None, Query(max_length=10)] = None,
    item_code: Annotated[str | None, Query(max_length=40)] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CasePage:
    return await service.list_cases(
        session,
        user,
        statuses=status,
        item_code=item_code,
        overdue=overdue,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{case_id}", summary="案件详情")
async def get_case(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return await service.detail(session, await service.get_case(session, user, case_id))


@router.post("/{case_id}/claim", summary="认领案件")
async def claim_case(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return await service.detail(session, await service.claim(session, user, case_id))


@router.post("/{case_id}/decide", summary="作出决定（批准并填写帮扶措施，或驳回并说明理由）")
async def decide_case(
    case_id: uuid.UUID, body: DecideIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await service.detail(session, await service.decide(session, user, case_id, body))


@router.post("/{case_id}/request-info", summary="要求群众补充材料")
async def request_info(
    case_id: uuid.UUID, body: RequestInfoIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await service.detail(session, await service.request_info(session, user, case_id, body))


@router.get(
    "/{case_id}/attachments/{attachment_id}",
    summary="查看群众上传的证明材料",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "application/pdf": {}}}},
)
async def download_attachment(
    case_id: uuid.UUID,
    attachment_id: uuid.UUID,
    user: CurrentStaff,
    session: DbSession,
    request: Request,
) -> Response:
    item = await service.attachment(session, user, case_id, attachment_id)
    data = await request.app.state.object_store.get(item.sha256)
    return Response(
        content=data,
        media_type=item.content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )
