from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.models import StaffUser


async def by_username(session: AsyncSession, username: str) -> StaffUser | None:
    return await session.scalar(select(StaffUser).where(StaffUser.username == username))


async def by_id(session: AsyncSession, user_id: uuid.UUID) -> StaffUser | None:
    return await session.get(StaffUser, user_id)


def add(session: AsyncSession, user: StaffUser) -> None:
    session.add(user)


async def listing(
    session: AsyncSession, *, after_username: str | None, limit: int
) -> list[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.username).limit(limit)
    if after_username is not None:
        query = query.where(StaffUser.username > after_username)
    return list((await session.scalars(query)).all())


async def token_states(session: AsyncSession) -> list[tuple[str, int, bool]]:
    """(user id, token version, disabled) of every account: what other services check."""
    rows = await session.execute(select(StaffUser.id, StaffUser.token_version, StaffUser.disabled))
    return [(str(user_id), int(version), bool(disabled)) for user_id, version, disabled in rows]
