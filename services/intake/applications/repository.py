"""Every query of the applications domain."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import load_only

from services.intake.models import (
    Application,
    ApplicationStatus,
    Attachment,
    CitizenBinding,
    IdempotencyRecord,
    OutboxMessage,
    TimelineEntry,
)
from shared.auth import Principal, Role
from shared.db import DriverStatement, batch_lock, lock_batch, locked_rows, param_casts, table_of
from shared.outbox import outbox_insert


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


class Submitted(enum.Enum):
    CREATED = "created"
    KEY_USED = "key_used"  # the Idempotency-Key came before: nothing written
    DUPLICATE = "duplicate"  # the person has an open application of the item: nothing written


_OPEN_PER_PERSON_ITEM = "uq_applications_open_per_person_item"


async def insert_submission(
    connection: AsyncConnection,
    *,
    idempotency: dict[str, Any],
    application: dict[str, Any],
    bind_citizen: bool,
    timeline: dict[str, Any],
    outbox: dict[str, list[Any]],
) -> Submitted:
    """Write a submission in one statement: the idempotency key with its answer, the
    application, the citizen's binding (if `bind_citizen`), the timeline line and the
    outbox rows.

    Each write after the key runs only if the one before it did: a key already used leaves
    everything else unwritten. An open application of the same person and item fails the
    whole statement on the partial unique index (so concurrent submissions cannot both
    pass), and the key goes with it: nothing keeps an answer for an application that does
    not exist. A concurrent insert of the same key waits for the other, so an in-flight
    first request is never run twice. Being one statement, it needs no transaction around
    it: on an autocommit connection it is one round trip."""
    if application.keys() != set(_APPLICATION_COLUMNS):
        # A column added to the submission but not to the statement would be dropped.
        raise ValueError(
            f"columns differ: {sorted(application.keys() ^ set(_APPLICATION_COLUMNS))}"
        )
    params = {
        **{f"key_{name}": value for name, value in idempotency.items()},
        **application,
        "bind_citizen": bind_citizen,
        **{f"timeline_{name}": value for name, value in timeline.items()},
        **outbox,
    }
    try:
        claimed = await _INSERT_SUBMISSION.scalar(connection, params)
    except IntegrityError as exc:
        violated = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if violated == _OPEN_PER_PERSON_ITEM:  # asyncpg's error, under SQLAlchemy's
            return Submitted.DUPLICATE
        raise
    return Submitted.CREATED if claimed else Submitted.KEY_USED


_KEY_COLUMNS = ("owner", "key", "request_hash", "status_code", "response_body")
_APPLICATION_COLUMNS = (
    "id", "item_code", "department", "status", "owner_openid", "submitted_by",
    "submitted_by_role", "submitted_by_name", "applicant_name", "id_number_enc",
    "id_number_hash", "phone_enc", "phone_hash", "id_number_masked", "phone_masked",
    "region_code", "household", "annual_income_per_capita", "description", "form",
    "prescreen", "deadline", "route_event_id", "reroutes", "created_at", "updated_at",
)  # fmt: skip
_TIMELINE_COLUMNS = ("kind", "title", "detail", "occurred_at")
_APPLICATIONS = table_of(Application)
# Only the models' own names and types are formatted in; every value is a parameter.
_SUBMISSION_SQL = text(
    f"""
    WITH claimed AS (
        INSERT INTO {table_of(IdempotencyRecord).fullname} ({", ".join(_KEY_COLUMNS)})
        SELECT {param_casts(table_of(IdempotencyRecord), _KEY_COLUMNS, "key_")}
        ON CONFLICT DO NOTHING
        RETURNING key
    ), created AS (
        INSERT INTO {_APPLICATIONS.fullname} ({", ".join(_APPLICATION_COLUMNS)})
        SELECT {param_casts(_APPLICATIONS, _APPLICATION_COLUMNS)}
        WHERE EXISTS (SELECT FROM claimed)
        RETURNING id, owner_openid, id_number_hash, phone_hash, applicant_name
    ), bound AS (
        INSERT INTO {table_of(CitizenBinding).fullname} (openid, id_number_hash, phone_hash, name)
        SELECT owner_openid, id_number_hash, phone_hash, applicant_name FROM created
        WHERE CAST(:bind_citizen AS boolean)
        ON CONFLICT DO NOTHING
    ), timeline AS (
        INSERT INTO {table_of(TimelineEntry).fullname}
            (application_id, {", ".join(_TIMELINE_COLUMNS)})
        SELECT id, {param_casts(table_of(TimelineEntry), _TIMELINE_COLUMNS, "timeline_")}
        FROM created
    ), queued AS (
        {outbox_insert(OutboxMessage)}
        WHERE EXISTS (SELECT FROM created)
    )
    SELECT EXISTS (SELECT FROM claimed) AS claimed
    """  # noqa: S608
)
# Sent straight to asyncpg: see DriverStatement.
_INSERT_SUBMISSION = DriverStatement(_SUBMISSION_SQL)


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
    `get_for_update` to take."""
    await lock_batch(session, _LOCK_APPLICATIONS, Application.id, application_ids)


_LOCK_APPLICATIONS = batch_lock(Application.id, _FOR_CASE_EVENT)


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
