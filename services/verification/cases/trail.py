"""What every change to a case leaves behind: an audit entry (who, when, what, why) and,
for changes others must know of, an event in the outbox, in the same transaction.

Both are gathered as the change is made and written together, in one statement, when the
transaction commits (`shared.db.deferred`): a clerk's action writes the case's changes,
its audit entry and its event in one round trip, and a consumer's batch all of its
entries and events (its cases' changes the flush writes before them)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.verification.cases import repository
from services.verification.models import AuditAction, Case, StaffUser
from shared.db import deferred, take_changes
from shared.events import EVENTS_STREAM, Envelope, EventType
from shared.outbox import correlated


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""The status the case has now (the default for both ends of an audit entry)."""


@dataclass
class _Trail:
    """The transaction's audit entries and outbox messages, in the order they were made."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    messages: list[tuple[str, Envelope]] = field(default_factory=list)
    # The cases the entries are about; when there is one (a clerk's action), its changes
    # go into the trail's statement instead of an UPDATE of the flush's own.
    cases: dict[uuid.UUID, Case] = field(default_factory=dict)
    case_changes: tuple[uuid.UUID, dict[str, Any]] | None = None

    def take_changes(self, session: Session) -> None:
        if len(self.cases) != 1:
            return  # a consumer's batch: the flush writes its cases
        [(case_id, case)] = self.cases.items()
        changes = take_changes(session, case)
        self.case_changes = (case_id, changes) if changes else None

    def write(self, connection: Connection) -> None:
        repository.insert_trail(connection, self.entries, self.messages, self.case_changes)


def record(
    session: AsyncSession,
    case: Case,
    *,
    at: datetime,
    actor: StaffUser | None,
    actor_role: str | None = None,
    action: AuditAction = AuditAction.TRANSITION,
    from_status: str | _Unchanged | None = UNCHANGED,
    to_status: str | _Unchanged = UNCHANGED,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    trail = deferred(session, _Trail)
    trail.cases[case.id] = case
    trail.entries.append(
        {
            "case_id": case.id,
            "action": action.value,
            "from_status": case.status if from_status is UNCHANGED else from_status,
            "to_status": case.status if to_status is UNCHANGED else to_status,
            "actor_id": actor.id if actor else None,
            "actor_name": actor.username if actor else None,
            "actor_role": actor.role if actor else (actor_role or "system"),
            "reason": reason,
            "data": data,
            "occurred_at": at,
        }
    )


def announce(
    session: AsyncSession,
    case: Case,
    event_type: EventType,
    payload: dict[str, Any],
    at: datetime,
    *,
    stream: str = EVENTS_STREAM,
    department: str | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope:
    """`event_id`, when the event's id must be known before it is announced."""
    envelope = correlated(
        Envelope(
            event_id=event_id or uuid.uuid4(),
            type=event_type,
            application_id=case.application_id,
            department=department or case.department,
            occurred_at=at,
            payload={"case_id": str(case.id), **payload},
        )
    )
    trail = deferred(session, _Trail)
    trail.cases[case.id] = case
    trail.messages.append((stream, envelope))
    return envelope
