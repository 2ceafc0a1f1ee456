from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from services.verification.accounts.dependencies import CurrentStaff
from services.verification.cases import service
from services.verification.cases.schemas import CaseDetail, CasePage, DecideIn
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
    return service.detail(await service.get_case(session, user, case_id))


@router.post("/{case_id}/claim", summary="认领案件")
async def claim_case(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return service.detail(await service.claim(session, user, case_id))


@router.post("/{case_id}/decide", summary="作出决定（批准并填写帮扶措施，或驳回并说明理由）")
async def decide_case(
    case_id: uuid.UUID, body: DecideIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return service.detail(await service.decide(session, user, case_id, body))
