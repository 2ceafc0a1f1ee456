from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.verification.accounts.dependencies import CurrentStaff, Settings
from services.verification.cases import service, workflow
from services.verification.cases.schemas import (
    AdvanceIn,
    AssignIn,
    AuditEntryOut,
    CaseDetail,
    CasePage,
    DecideIn,
    FieldCheckIn,
    NoticeOut,
    RequestInfoIn,
    RevealIn,
    RevealOut,
    TransferIn,
)
from services.verification.models import Case
from shared.db import DbSession
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.pii import PiiCipher, cipher_for

router = APIRouter(prefix="/cases", tags=["cases"])


async def _cipher(settings: Settings) -> PiiCipher:
    return cipher_for(settings)


Cipher = Annotated[PiiCipher, Depends(_cipher)]


async def _detail(session: DbSession, case: Case) -> CaseDetail:
    # Built from the case as changed in memory, before any flush (a flush would unload
    # the attachments loaded with it); the commit, before the answer is sent, writes it.
    return await service.detail(session, case)


# Routes are matched in order (see shared.web.create_service_app): a clerk's actions, most
# of the traffic, come first, in the order a case takes them; then the reads.


@router.post("/{case_id}/claim", summary="认领案件")
async def claim(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return await _detail(session, await workflow.claim(session, user, case_id))


@router.post("/{case_id}/advance", summary="完成当前环节，进入下一环节")
async def advance(
    case_id: uuid.UUID, body: AdvanceIn, user: CurrentStaff, session: DbSession, settings: Settings
) -> CaseDetail:
    case = await workflow.advance(session, user, case_id, body, notice_day=settings.notice_day)
    return await _detail(session, case)


@router.post("/{case_id}/field-check", summary="填写实地调查记录")
async def field_check(
    case_id: uuid.UUID, body: FieldCheckIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await _detail(session, await workflow.record_field_check(session, user, case_id, body))


@router.post("/{case_id}/decide", summary="作出决定（批准并填写帮扶措施，或驳回并说明理由）")
async def decide(
    case_id: uuid.UUID, body: DecideIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await _detail(session, await workflow.decide(session, user, case_id, body))


@router.post("/{case_id}/request-info", summary="要求群众补充材料（办理时限暂停）")
async def request_info(
    case_id: uuid.UUID, body: RequestInfoIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await _detail(session, await workflow.request_info(session, user, case_id, body))


@router.post("/{case_id}/transfer", summary="转交其他部门（时限不变）")
async def transfer(
    case_id: uuid.UUID, body: TransferIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await _detail(session, await workflow.transfer(session, user, case_id, body))


@router.post("/{case_id}/release", summary="退回队列（尚未开始办理时）")
async def release(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return await _detail(session, await workflow.release(session, user, case_id))


@router.post("/{case_id}/assign", summary="改派承办人（督办人员）")
async def assign(
    case_id: uuid.UUID, body: AssignIn, user: CurrentStaff, session: DbSession
) -> CaseDetail:
    return await _detail(session, await workflow.assign(session, user, case_id, body))


@router.post("/{case_id}/reveal", summary="查看完整身份证号或手机号（记入审计日志）")
async def reveal(
    case_id: uuid.UUID, body: RevealIn, user: CurrentStaff, session: DbSession, cipher: Cipher
) -> RevealOut:
    value = await workflow.reveal(session, user, case_id, body, cipher)
    return RevealOut(field=body.field, value=value)


@router.get("", summary="办理队列（本部门、本辖区，按时限排序）")
async def list_cases(
    user: CurrentStaff,
    session: DbSession,
    status: Annotated[list[str] | None, Query(max_length=10)] = None,
    item_code: Annotated[str | None, Query(max_length=40)] = None,
    overdue: bool | None = None,
    region: Annotated[str | None, Query(pattern=r"^\d{6}$", description="辖区内的县级代码")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CasePage:
    return await service.list_cases(
        session,
        user,
        statuses=status,
        item_code=item_code,
        overdue=overdue,
        region=region,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{case_id}", summary="案件详情")
async def get_case(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> CaseDetail:
    return await service.detail(session, await service.get_case(session, user, case_id))


@router.get("/{case_id}/history", summary="办理记录（审计日志，只读）")
async def history(
    case_id: uuid.UUID, user: CurrentStaff, session: DbSession
) -> list[AuditEntryOut]:
    return await service.history(session, user, case_id)


@router.get("/{case_id}/notice", summary="村评议公示文本")
async def notice(case_id: uuid.UUID, user: CurrentStaff, session: DbSession) -> NoticeOut:
    return await service.notice(session, user, case_id)


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
