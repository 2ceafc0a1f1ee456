"""Every query of the cases domain. Scope (department and region) is applied here, so no
query can forget it."""

from __future__ import annotations

import enum
import functools
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    TextClause,
    Update,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import with_expression

from services.verification.models import (
    AuditEntry,
    Case,
    CaseAttachment,
    CaseStatus,
    OutboxMessage,
    StaffUser,
)
from shared.auth import Role
from shared.db import column_arrays, table_of, unnest_insert, update_cte
from shared.events import Envelope
from shared.outbox import outbox_columns, outbox_insert
from shared.regions import regions

_S = TypeVar("_S", bound=Select[Any])


class RegionLevel(enum.Enum):
    COUNTY = "county"
    PREFECTURE = "prefecture"
    PROVINCE = "province"


@dataclass(frozen=True)
class Scope:
    """What a staff member may see: a department within a region (county, prefecture or
    the whole province)."""

    department: str | None
    region_code: str

    @classmethod
    def of(cls, user: StaffUser) -> Scope:
        department = None if user.role == Role.ADMIN else user.department
        return cls(department=department, region_code=user.region_code)

    @property
    def level(self) -> RegionLevel:
        if self.region_code.endswith("0000"):
            return RegionLevel.PROVINCE
        if self.region_code.endswith("00"):
            return RegionLevel.PREFECTURE
        return RegionLevel.COUNTY

    @property
    def region_prefix(self) -> str:
        """The part of a county code that every county in the scope shares."""
        digits = {RegionLevel.PROVINCE: 2, RegionLevel.PREFECTURE: 4, RegionLevel.COUNTY: 6}
        return self.region_code[: digits[self.level]]

    def conditions(self) -> list[ColumnElement[bool]]:
        return _scope_conditions(
            self.department is not None,
            self.level,
            department=self.department,
            region=self.region_prefix,
        )

    def params(self) -> dict[str, str | None]:
        """The values of the `_scope_conditions` parameters, for statements built once."""
        return {"scope_department": self.department, "scope_region": self.region_prefix}

    def covers_region(self, region_code: str) -> bool:
        return regions().county_in_scope(region_code, self.region_code)

    def apply(self, query: _S) -> _S:
        return query.where(*self.conditions())


def _scope_conditions(
    has_department: bool,
    level: RegionLevel,
    *,
    department: str | None = None,
    region: str | None = None,
) -> list[ColumnElement[bool]]:
    """The scope's conditions on cases: with the values given, or (without them) as the
    parameters `scope_department` and `scope_region`."""
    department_value = bindparam("scope_department", department, type_=String)
    region_value = bindparam("scope_region", region, type_=String)
    found: list[ColumnElement[bool]] = []
    if has_department:
        found.append(Case.department == department_value)
    if level is RegionLevel.COUNTY:
        found.append(Case.region_code == region_value)
    else:
        found.append(Case.region_code.startswith(region_value))
    return found


async def by_route_event(session: AsyncSession, route_event_id: uuid.UUID) -> Case | None:
    return await session.scalar(select(Case).where(Case.route_event_id == route_event_id))


_CASES = table_of(Case)
# What a newly opened case is written with; the other columns take their defaults.
_NEW_CASE_COLUMNS = ("id", "application_id", "route_event_id", "opened_event_id",
                     "department", "item_code", "region_code", "status", "applicant_name",
                     "id_number_enc", "phone_enc", "id_number_masked", "phone_masked",
                     "household", "description", "form", "prescreen", "submitted_by_role",
                     "submitted_at", "deadline", "transferred_from_case_id", "created_at",
                     "updated_at")  # fmt: skip
# Written as JSON text (the statements cast them), derived from the model.
_JSON_COLUMNS = frozenset(c.name for c in _CASES.columns if isinstance(c.type, JSONB))
# Built once: any number of cases in one statement; a redelivered route message (the
# same route event) inserts nothing.
_INSERT_NEW_CASES = text(
    f"""{unnest_insert(_CASES, _NEW_CASE_COLUMNS)}
    ON CONFLICT (route_event_id) DO NOTHING RETURNING route_event_id"""
)


async def insert_new(session: AsyncSession, cases: list[Case]) -> set[uuid.UUID]:
    """Write cases not yet in the database, all in one statement, and return the route
    events of those written: a case whose route event already has one is not written.
    The cases stay outside the session."""
    if not cases:
        return set()
    columns = column_arrays(
        ({key: getattr(case, key) for key in _NEW_CASE_COLUMNS} for case in cases),
        _NEW_CASE_COLUMNS,
    )
    for key in _JSON_COLUMNS.intersection(_NEW_CASE_COLUMNS):
        columns[key] = [None if value is None else json.dumps(value) for value in columns[key]]
    connection = await session.connection()
    return set((await connection.execute(_INSERT_NEW_CASES, columns)).scalars())


_AUDIT = table_of(AuditEntry)
_AUDIT_COLUMNS = ("case_id", "action", "from_status", "to_status", "actor_id", "actor_name",
                  "actor_role", "reason", "data", "occurred_at")  # fmt: skip
# Built once: a transaction's audit entries and outbox messages in one statement, each
# table's rows as column arrays (in the order given: ids follow it, and so does the relay).
_INSERT_TRAIL = text(
    f"""
    WITH audit AS ({unnest_insert(_AUDIT, _AUDIT_COLUMNS)})
    {outbox_insert(OutboxMessage)}
    """
)


@functools.cache
def _trail_with_case_update(columns: tuple[str, ...]) -> TextClause:
    """`_INSERT_TRAIL` that also writes one case's changed `columns` (`changed_*`
    parameters), built once per set of columns (a few: one per kind of clerk action)."""
    return text(
        f"""
        WITH {update_cte(_CASES, columns, name="changed", prefix="changed_")},
        audit AS ({unnest_insert(_AUDIT, _AUDIT_COLUMNS)})
        {outbox_insert(OutboxMessage)}
        """
    )


def insert_trail(
    connection: Connection,
    entries: list[dict[str, Any]],
    messages: list[tuple[str, Envelope]],
    case_changes: tuple[uuid.UUID, dict[str, Any]] | None = None,
) -> None:
    """Write audit entries (dicts of `_AUDIT_COLUMNS`) and outbox messages in one statement,
    with `case_changes` (a case's id and its changed columns, see `shared.db.take_changes`)
    in the same statement. Synchronous: it runs inside the commit (`shared.db.deferred`)."""
    if not entries and not messages and not case_changes:
        return
    columns = column_arrays(entries, _AUDIT_COLUMNS)
    columns["data"] = [None if data is None else json.dumps(data) for data in columns["data"]]
    params: dict[str, Any] = {**columns, **outbox_columns(messages)}
    statement = _INSERT_TRAIL
    if case_changes:
        case_id, changes = case_changes
        statement = _trail_with_case_update(tuple(sorted(changes)))
        params["changed_id"] = case_id
        for name, value in changes.items():
            encoded = json.dumps(value) if name in _JSON_COLUMNS and value is not None else value
            params[f"changed_{name}"] = encoded
    connection.execute(statement, params)


async def audit_entries(session: AsyncSession, case_id: uuid.UUID) -> list[AuditEntry]:
    return list(
        (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.case_id == case_id)
                .order_by(AuditEntry.occurred_at, AuditEntry.id)
            )
        ).all()
    )


async def newly_overdue(session: AsyncSession, now: datetime, *, limit: int) -> list[Case]:
    """Cases past their deadline, clock running, not yet announced; locked for this sweep."""
    return list(
        (
            await session.scalars(
                select(Case)
                .where(
                    Case.deadline < now,
                    Case.overdue_announced_at.is_(None),
                    Case.info_requested_at.is_(None),
                    Case.status.not_in([CaseStatus.DECIDED, CaseStatus.TRANSFERRED]),
                )
                .order_by(Case.deadline)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )


async def active_for_application(session: AsyncSession, application_id: uuid.UUID) -> Case | None:
    """The application's case that is still being worked (after a transfer, the new one)."""
    return await session.scalar(
        select(Case)
        .where(
            Case.application_id == application_id,
            Case.status.not_in([CaseStatus.DECIDED, CaseStatus.TRANSFERRED]),
        )
        .order_by(Case.created_at.desc())
        .limit(1)
        .with_for_update()
    )


async def add_attachment(session: AsyncSession, attachment: CaseAttachment) -> None:
    await session.execute(
        insert(CaseAttachment)
        .values(
            id=attachment.id,
            application_id=attachment.application_id,
            sha256=attachment.sha256,
            content_type=attachment.content_type,
            size=attachment.size,
            filename=attachment.filename,
            added_at=attachment.added_at,
        )
        .on_conflict_do_nothing()
    )


_ATTACHMENTS = table_of(CaseAttachment)
_ATTACHMENTS_OF = (
    select(_ATTACHMENTS)
    .where(_ATTACHMENTS.c.application_id == bindparam("application_id"))
    .order_by(_ATTACHMENTS.c.added_at, _ATTACHMENTS.c.id)
)


async def attachments_of(session: AsyncSession, application_id: uuid.UUID) -> list[Row[Any]]:
    """The application's attachments as plain rows (every case answer lists them: a Core
    query costs a fraction of loading ORM objects nobody changes)."""
    connection = await session.connection()
    return list(await connection.execute(_ATTACHMENTS_OF, {"application_id": application_id}))


# The application's attachments as one JSON value beside the case, so that an answer
# listing them costs no query of its own (`Case.attachments`).
_ATTACHMENTS_JSON = (
    select(
        func.coalesce(
            func.jsonb_agg(
                aggregate_order_by(
                    func.jsonb_build_object(
                        *(
                            part
                            for name in ("id", "content_type", "size", "filename", "added_at")
                            for part in (text(f"'{name}'"), _ATTACHMENTS.c[name])
                        )
                    ),
                    _ATTACHMENTS.c.added_at,
                    _ATTACHMENTS.c.id,
                )
            ),
            text("'[]'::jsonb"),
        )
    )
    .where(_ATTACHMENTS.c.application_id == Case.application_id)
    .correlate(Case)
    .scalar_subquery()
)
_WITH_ATTACHMENTS = with_expression(Case.attachments, _ATTACHMENTS_JSON)


@functools.cache
def _case_in_scope(has_department: bool, level: RegionLevel, for_update: bool) -> Select[Case]:
    """One case by `case_id` within a scope, with its attachments; built once per kind of
    scope (the values are parameters), so a request does not build and key a query."""
    query = (
        select(Case)
        .options(_WITH_ATTACHMENTS)
        .where(Case.id == bindparam("case_id"), *_scope_conditions(has_department, level))
    )
    return query.with_for_update(of=Case) if for_update else query


async def get_in_scope(
    session: AsyncSession, scope: Scope, case_id: uuid.UUID, *, for_update: bool = False
) -> Case | None:
    """The case, if in `scope`, with its attachments; locked with `for_update`."""
    query = _case_in_scope(scope.department is not None, scope.level, for_update)
    return await session.scalar(query, {"case_id": case_id, **scope.params()})


async def list_in_scope(
    session: AsyncSession,
    scope: Scope,
    *,
    statuses: list[str] | None,
    item_code: str | None,
    region: str | None = None,
    overdue_before: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Case]:
    query = scope.apply(select(Case))
    if statuses:
        query = query.where(Case.status.in_(statuses))
    if item_code:
        query = query.where(Case.item_code == item_code)
    if region:
        query = query.where(Case.region_code == region)
    if overdue_before is not None:
        query = query.where(
            Case.deadline < overdue_before,
            Case.info_requested_at.is_(None),
            Case.status.not_in([CaseStatus.DECIDED, CaseStatus.TRANSFERRED]),
        )
    if after is not None:
        query = query.where(tuple_(Case.deadline, Case.id) > after)
    query = query.order_by(Case.deadline, Case.id).limit(limit)
    return list((await session.scalars(query)).all())


@functools.cache
def _claim_in_scope(has_department: bool, level: RegionLevel) -> Update:
    return (
        update(Case)
        .where(
            Case.id == bindparam("case_id"),
            Case.status == CaseStatus.OPEN,
            *_scope_conditions(has_department, level),
        )
        .values(
            status=CaseStatus.CLAIMED,
            assignee_id=bindparam("user_id"),
            claimed_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
        .returning(Case)
        .options(_WITH_ATTACHMENTS)
    )


async def claim(
    session: AsyncSession, scope: Scope, case_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> Case | None:
    """Take an open case (with its attachments); exactly one of two racing clerks gets a
    row back."""
    # The session is synchronised from RETURNING alone (populate_existing refreshes the
    # case if it was loaded before), not by "auto", which first tried to evaluate the
    # scope's criteria in Python against the identity map: a fifth of a claim's CPU.
    claimed: Case | None = await session.scalar(
        _claim_in_scope(scope.department is not None, scope.level),
        {"case_id": case_id, "user_id": user_id, "now": now, **scope.params()},
        execution_options={"synchronize_session": False, "populate_existing": True},
    )
    return claimed
