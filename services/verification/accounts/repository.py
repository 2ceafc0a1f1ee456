from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.models import StaffUser
from shared.db import table_of


async def by_username(session: AsyncSession, username: str) -> StaffUser | None:
    return await session.scalar(select(StaffUser).where(StaffUser.username == username))


_STAFF = table_of(StaffUser)
_SNAPSHOT = select(_STAFF).where(_STAFF.c.id == bindparam("id"))


async def snapshot_by_id(session: AsyncSession, user_id: uuid.UUID) -> StaffUser | None:
    """The account as it is now, outside the session: for reading only (a change to it is
    never written). Every staff request looks its account up; a Core query costs a
    fraction of the ORM's identity-map load."""
    connection = await session.connection()
    row = (await connection.execute(_SNAPSHOT, {"id": user_id})).mappings().first()
    return None if row is None else StaffUser(**row)


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
