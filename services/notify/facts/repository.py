"""Every query of the facts domain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact
from shared.db import batch_lock, lock_batch, locked_rows


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
    take; an application with no fact yet is remembered as such."""
    await lock_batch(session, _LOCK_FACTS, ApplicationFact.application_id, application_ids)


_LOCK_FACTS = batch_lock(ApplicationFact.application_id)


def add(session: AsyncSession, fact: ApplicationFact) -> None:
    """A new fact, flushed at commit; a later event of the same batch finds it through
    `get_for_update` (with autoflush off, a query would not)."""
    session.add(fact)
    locked_rows(session, ApplicationFact)[fact.application_id] = fact
