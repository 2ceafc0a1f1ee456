"""A citizen proves who he is (name, ID number, phone) to see applications a grid worker
entered for him."""

from __future__ import annotations

from fastapi import APIRouter

from services.intake.applications import repository
from services.intake.applications.schemas import BindingIn, BindingOut
from services.intake.auth.dependencies import Cipher, CurrentCitizen, Limiter, Settings
from shared.auth import Role
from shared.db import DbSession
from shared.errors import Forbidden

router = APIRouter(prefix="/me", tags=["me"])


@router.post(
    "/bindings",
    summary="绑定本人身份，查看网格员为本人代报的申请",
    description="姓名、身份证号和手机号须与代报时填写的一致。",
)
async def bind(
    body: BindingIn,
    principal: CurrentCitizen,
    session: DbSession,
    settings: Settings,
    cipher: Cipher,
    limiter: Limiter,
) -> BindingOut:
    if principal.role is not Role.CITIZEN:
        raise Forbidden("只有群众本人可以绑定身份", code="citizen_only")
    # Limits guessing other people's phone numbers for a known ID number.
    await limiter.hit(settings.rate_bind_per_user, "bind-user", principal.subject)
    await repository.bind_citizen(
        session,
        principal.subject,
        cipher.blind_index(body.id_number, purpose="id_number"),
        cipher.blind_index(body.phone, purpose="phone"),
        body.name,
    )
    await session.flush()
    return BindingOut(bound=True, applications=await repository.count_visible(session, principal))
