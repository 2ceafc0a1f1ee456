from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.notify.metrics import service
from services.notify.metrics.schemas import ClosureReport, ClosureStats, GroupBy
from shared.db import DbSession

router = APIRouter(prefix="/metrics", tags=["metrics"])


@router.get(
    "/closure",
    summary="办结率及其构成",
    response_model=ClosureReport | ClosureStats,
    description="不带 group_by 时返回全部合计；带 group_by 时按部门、事项、地区或日期分组。",
)
async def closure(
    request: Request,
    session: DbSession,
    group_by: GroupBy | None = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
) -> ClosureReport | ClosureStats:
    report = await service.closure_report(
        session,
        group_by=group_by,
        received_from=from_,
        received_to=to,
        timezone=request.app.state.settings.report_timezone,
    )
    if group_by is None:
        return report.groups[0]
    return report
