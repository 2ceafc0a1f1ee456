"""Every query of the applications domain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Uuid,
    and_,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from services.intake.models import (
    Application,
    ApplicationStatus,
    Attachment,
    CitizenBinding,
    IdempotencyRecord,
    TimelineEntry,
)
from shared.auth import Principal, Role
from shared.db import locked_rows, table_of


async def claim_idempotency_key(
    session: AsyncSession,
    owner: str,
    key: str,
    request_hash: str,
    *,
    status_code: int | None = None,
    response_body: dict[str, Any] | None = None,
) -> bool:
    """Insert the key (with the answer, when it is known before the work is done: it commits
    or rolls back with that work); False if it exists. A concurrent insert of the same key
    waits here for the other transaction, so an in-flight first request is never run twice."""
    connection = await session.connection()
    result = await connection.execute(
        _CLAIM_KEY,
        {
            "owner": owner,
            "key": key,
            "request_hash": request_hash,
            "status_code": status_code,
            "response_body": response_body,
        },
    )
    return result.scalar() is not None


async def get_idempotency_record(
    session: AsyncSession, owner: str, key: str
) -> IdempotencyRecord | None:
    return await session.get(IdempotencyRecord, (owner, key))


async def find_open_duplicate(
    session: AsyncSession, id_number_hash: str, item_code: str
) -> uuid.UUID | None:
    return await session.scalar(
        select(Application.id).where(
            Application.id_number_hash == id_number_hash,
            Application.item_code == item_code,
            Application.status != ApplicationStatus.CLOSED,
        )
    )


async def insert_application(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a new application; False, with nothing written, if the person already has an
    open one for the item (the partial unique index decides, so concurrent submissions
    cannot both pass)."""
    connection = await session.connection()  # Core, not the ORM: nothing to load back
    result = await connection.execute(_INSERT_APPLICATION, values)
    return result.scalar() is not None


# Built once: constructing a 30-column INSERT per request costs more than executing it.
_INSERT_APPLICATION = (
    insert(table_of(Application)).on_conflict_do_nothing().returning(table_of(Application).c.id)
)
_CLAIM_KEY = (
    insert(table_of(IdempotencyRecord))
    .on_conflict_do_nothing()
    .returning(table_of(IdempotencyRecord).c.key)
)


async def insert_timeline(session: AsyncSession, entry: TimelineEntry) -> None:
    """Write a timeline line at once, outside the ORM's unit of work (the submission path)."""
    connection = await session.connection()
    await connection.execute(
        _INSERT_TIMELINE,
        {
            column: getattr(entry, column)
            for column in ("application_id", "kind", "title", "detail", "occurred_at")
        },
    )


_INSERT_TIMELINE = insert(table_of(TimelineEntry))


def add_timeline(
    session: AsyncSession,
    application_id: uuid.UUID,
    *,
    kind: str,
    title: str,
    occurred_at: datetime,
    detail: str | None = None,
    source_event_id: uuid.UUID | None = None,
) -> None:
    session.add(
        TimelineEntry(
            application_id=application_id,
            kind=kind,
            title=title,
            detail=detail,
            occurred_at=occurred_at,
            source_event_id=source_event_id,
        )
    )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """Who sees an application: the citizen who submitted it, the grid worker who entered
    it, and — for what a grid worker entered (no owner) — a citizen bound to the person it
    is for (name, ID number and phone all match). A binding never opens what another WeChat
    user submitted himself."""
    if principal.role is Role.GRID_WORKER:
        return Application.submitted_by == principal.subject
    bound = exists().where(
        CitizenBinding.openid == principal.subject,
        CitizenBinding.id_number_hash == Application.id_number_hash,
        CitizenBinding.phone_hash == Application.phone_hash,
        CitizenBinding.name == Application.applicant_name,
    )
    return or_(
        Application.owner_openid == principal.subject,
        and_(Application.owner_openid.is_(None), bound),
    )


async def get_visible(
    session: AsyncSession,
    application_id: uuid.UUID,
    principal: Principal,
    *,
    for_update: bool = False,
) -> Application | None:
    query = select(Application).where(Application.id == application_id, visible_to(principal))
    if for_update:
        query = query.with_for_update(of=Application)
    return await session.scalar(query)


async def bind_citizen(
    session: AsyncSession, openid: str, id_number_hash: str, phone_hash: str, name: str
) -> None:
    connection = await session.connection()
    await connection.execute(
        _BIND_CITIZEN,
        {
            "openid": openid,
            "id_number_hash": id_number_hash,
            "phone_hash": phone_hash,
            "name": name,
        },
    )


# Built once, run as Core: through the ORM this INSERT was compiled for every submission.
_BIND_CITIZEN = insert(table_of(CitizenBinding)).on_conflict_do_nothing()


async def count_visible(session: AsyncSession, principal: Principal) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Application).where(visible_to(principal))
    )
    return int(count or 0)


def add_attachment(session: AsyncSession, attachment: Attachment) -> None:
    session.add(attachment)


async def attachments_of(session: AsyncSession, application_id: uuid.UUID) -> list[Attachment]:
    return list(
        (
            await session.scalars(
                select(Attachment)
                .where(Attachment.application_id == application_id)
                .order_by(Attachment.created_at, Attachment.id)
            )
        ).all()
    )


async def count_attachments(session: AsyncSession, application_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Attachment)
        .where(Attachment.application_id == application_id)
    )
    return int(count or 0)


# What a department's event reads of an application (the rest it only writes, which needs
# nothing loaded): the whole row, JSONB and all, was most of the cost of loading it. Reading
# another column raises instead of querying.
_FOR_CASE_EVENT = load_only(
    Application.status, Application.routed_at, Application.item_code, raiseload=True
)


async def get_for_update(session: AsyncSession, application_id: uuid.UUID) -> Application | None:
    """The application, locked, for a department's event: from what `lock_for_update` took
    for the batch if it is there, else by a query of its own."""
    locked = locked_rows(session, Application)
    if application_id in locked:
        return locked[application_id]
    return await session.scalar(
        select(Application)
        .options(_FOR_CASE_EVENT)
        .where(Application.id == application_id)
        .with_for_update()
    )


async def lock_for_update(session: AsyncSession, application_ids: Iterable[uuid.UUID]) -> None:
    """Lock and load the applications of a consumer's batch in one query, for
    `get_for_update` to take. In key order: two batches that share rows lock them in the
    same order, so they cannot deadlock on each other."""
    ids = sorted(set(application_ids))
    if not ids:
        return
    found = {a.id: a for a in await session.scalars(_LOCK_APPLICATIONS, {"ids": ids})}
    locked = locked_rows(session, Application)
    for application_id in ids:
        locked[application_id] = found.get(application_id)


# One array parameter, not IN (...): the same statement, prepared once, for any batch size.
_LOCK_APPLICATIONS = (
    select(Application)
    .options(_FOR_CASE_EVENT)
    .where(Application.id == any_(bindparam("ids", type_=ARRAY(Uuid))))
    .order_by(Application.id)
    .with_for_update()
)


async def list_visible(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Application]:
    query = select(Application).where(visible_to(principal))
    if after is not None:
        query = query.where(tuple_(Application.created_at, Application.id) < after)
    query = query.order_by(Application.created_at.desc(), Application.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def timeline(session: AsyncSession, application_id: uuid.UUID) -> list[TimelineEntry]:
    return list(
        (
            await session.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.application_id == application_id)
                .order_by(TimelineEntry.occurred_at, TimelineEntry.id)
            )
        ).all()
    )


async def unacknowledged(
    session: AsyncSession, *, older_than: datetime, limit: int
) -> list[Application]:
    """Submitted applications whose case.opened has not come back, last routed long ago."""
    return list(
        (
            await session.scalars(
                select(Application)
                .where(
                    Application.routed_at.is_(None),
                    Application.route_event_id.is_not(None),
                    Application.status == ApplicationStatus.SUBMITTED,
                    Application.created_at < older_than,
                    or_(
                        Application.last_routed_at.is_(None),
                        Application.last_routed_at < older_than,
                    ),
                )
                .order_by(Application.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
