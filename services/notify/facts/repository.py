"""Every query of the facts domain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import Uuid, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact
from shared.db import locked_rows


async def get_for_update(
    session: AsyncSession, application_id: uuid.UUID
) -> ApplicationFact | None:
    """The application's fact, locked: from what `lock_for_update` took for the batch, or
    what an earlier event of the batch created, if it is there; else by a query of its own."""
    locked = locked_rows(session, ApplicationFact)
    if application_id in locked:
        return locked[application_id]
    return await session.scalar(
        select(ApplicationFact)
        .where(ApplicationFact.application_id == application_id)
        .with_for_update()
    )


async def lock_for_update(session: AsyncSession, application_ids: Iterable[uuid.UUID]) -> None:
    """Lock and load the facts of a consumer's batch in one query, for `get_for_update` to
    take; an application with no fact yet is remembered as such. In key order: two batches
    that share rows lock them in the same order, so they cannot deadlock on each other."""
    ids = sorted(set(application_ids))
    if not ids:
        return
    found = {f.application_id: f for f in await session.scalars(_LOCK_FACTS, {"ids": ids})}
    locked = locked_rows(session, ApplicationFact)
    for application_id in ids:
        locked[application_id] = found.get(application_id)


# One array parameter, not IN (...): the same statement, prepared once, for any batch size.
_LOCK_FACTS = (
    select(ApplicationFact)
    .where(ApplicationFact.application_id == any_(bindparam("ids", type_=ARRAY(Uuid))))
    .order_by(ApplicationFact.application_id)
    .with_for_update()
)


def add(session: AsyncSession, fact: ApplicationFact) -> None:
    """A new fact, flushed at commit; a later event of the same batch finds it through
    `get_for_update` (with autoflush off, a query would not)."""
    session.add(fact)
    locked_rows(session, ApplicationFact)[fact.application_id] = fact
