from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import GridWorker, RefreshToken, WechatSession


async def active_grid_worker(session: AsyncSession, openid: str) -> GridWorker | None:
    return await session.scalar(
        select(GridWorker).where(GridWorker.openid == openid, GridWorker.active.is_(True))
    )


async def save_wechat_session(
    session: AsyncSession, openid: str, session_key_enc: str, unionid: str | None, now: datetime
) -> None:
    statement = insert(WechatSession).values(
        openid=openid, session_key_enc=session_key_enc, unionid=unionid, updated_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[WechatSession.openid],
            set_={
                "session_key_enc": statement.excluded.session_key_enc,
                "unionid": statement.excluded.unionid,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


def add_refresh_token(session: AsyncSession, token: RefreshToken) -> None:
    session.add(token)


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def upsert_grid_worker(session: AsyncSession, worker: GridWorker) -> None:
    statement = insert(GridWorker).values(
        openid=worker.openid, name=worker.name, region_code=worker.region_code, active=True
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[GridWorker.openid],
            set_={"name": worker.name, "region_code": worker.region_code, "active": True},
        )
    )


async def deactivate_grid_worker(session: AsyncSession, openid: str) -> bool:
    result = await session.execute(
        update(GridWorker).where(GridWorker.openid == openid).values(active=False)
    )
    return bool(getattr(result, "rowcount", 0))
