from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel

from services.notify.reminders.service import reminders_for
from shared import staff_tokens
from shared.auth import Audience, Principal, Role, bearer_token, decode_token
from shared.db import DbSession
from shared.errors import Forbidden
from shared.pagination import MAX_LIMIT

router = APIRouter(tags=["reminders"])


async def current_staff(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """A staff token issued by verification, refused when verification has since disabled
    the account or reset its password (shared through Redis)."""
    principal = decode_token(
        request.app.state.settings, bearer_token(authorization), audience=Audience.STAFF
    )
    if principal.role not in (Role.CLERK, Role.SUPERVISOR, Role.ADMIN):
        raise Forbidden()
    await staff_tokens.check(request.app.state.redis, principal)
    return principal


CurrentStaff = Annotated[Principal, Depends(current_staff)]


class ReminderOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    kind: str
    text: str
    department: str
    region_code: str
    deadline: datetime
    created_at: datetime


@router.get("/reminders", summary="催办与督办提醒（本人案件或本辖区）")
async def reminders(
    principal: CurrentStaff,
    session: DbSession,
    kind: Annotated[str | None, Query(pattern="^(due_soon|overdue)$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> list[ReminderOut]:
    rows = await reminders_for(session, principal, kind=kind, limit=limit)
    return [
        ReminderOut(
            id=r.id,
            case_id=r.case_id,
            kind=r.kind,
            text=r.text,
            department=r.department,
            region_code=r.region_code,
            deadline=r.deadline,
            created_at=r.created_at,
        )
        for r in rows
    ]
