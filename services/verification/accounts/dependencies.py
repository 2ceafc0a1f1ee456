from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from services.verification.accounts.service import active_principal
from services.verification.models import StaffUser
from services.verification.settings import VerificationSettings
from shared.auth import Audience, Role, bearer_token, decode_token
from shared.db import DbSession
from shared.errors import Forbidden


async def _settings(request: Request) -> VerificationSettings:
    settings: VerificationSettings = request.app.state.settings
    return settings


Settings = Annotated[VerificationSettings, Depends(_settings)]


async def _current_staff(
    settings: Settings,
    session: DbSession,
    authorization: Annotated[str | None, Header()] = None,
) -> StaffUser:
    principal = decode_token(settings, bearer_token(authorization), audience=Audience.STAFF)
    return await active_principal(session, principal)


CurrentStaff = Annotated[StaffUser, Depends(_current_staff)]


async def _current_admin(user: CurrentStaff) -> StaffUser:
    if user.role != Role.ADMIN:
        raise Forbidden("只有系统管理员可以管理工作人员账号", code="admin_only")
    return user


CurrentAdmin = Annotated[StaffUser, Depends(_current_admin)]
