"""Notify follows the events: each one updates the application's fact (and so the closure
counters), and may owe the citizen a message or the supervisors an escalation."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.facts import repository
from services.notify.metrics.rollups import FactState, apply_change
from services.notify.models import ApplicationFact
from services.notify.notifications.service import queue_for_event
from services.notify.reminders.service import escalate_overdue
from shared.events import Envelope, EventType

# Events that carry enough of the application to create its fact if the submission has not
# been seen yet (several consumers may apply events out of order).
_SELF_CONTAINED = {
    EventType.APPLICATION_SUBMITTED,
    EventType.CASE_DECIDED,
    EventType.APPLICATION_WITHDRAWN,
    EventType.APPLICATION_RATED,
}


def _new_fact(envelope: Envelope) -> ApplicationFact:
    payload = envelope.payload
    recipient = payload.get("recipient") or {}
    return ApplicationFact(
        application_id=envelope.application_id,
        department=envelope.department,
        item_code=payload["item_code"],
        region_code=payload["region_code"],
        received_at=datetime.fromisoformat(payload["submitted_at"]),
        deadline=datetime.fromisoformat(payload["deadline"]),
        recipient_openid=recipient.get("openid"),
        recipient_phone_enc=recipient.get("phone_enc"),
        overdue=False,
        waiting_for_citizen=False,
    )


def _close(fact: ApplicationFact, outcome: str, at: datetime) -> None:
    if fact.closed_at is None:  # the first closure wins
        fact.closed_at = at
        fact.outcome = outcome
        fact.assignee_id = None


async def lock_for_events(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Before a batch: lock and load its applications' facts in one query, which
    `apply_event` then takes instead of selecting each one again."""
    await repository.lock_for_update(session, (e.application_id for e in envelopes))


async def apply_event(session: AsyncSession, envelope: Envelope, zone: ZoneInfo) -> None:
    fact = await repository.get_for_update(session, envelope.application_id)
    if fact is None:
        if envelope.type not in _SELF_CONTAINED:
            return  # nothing to follow yet: the submission event brings the fact
        fact = _new_fact(envelope)
        repository.add(session, fact)
        before = None
    else:
        before = FactState.of(fact)
        if envelope.type == EventType.APPLICATION_SUBMITTED:
            # Created earlier by a decision or rating event: only the recipient is new.
            recipient = envelope.payload.get("recipient") or {}
            fact.recipient_openid = fact.recipient_openid or recipient.get("openid")
            fact.recipient_phone_enc = fact.recipient_phone_enc or recipient.get("phone_enc")
    _follow(fact, envelope)
    apply_change(session, before, FactState.of(fact), zone)
    queue_for_event(session, envelope, fact, zone)
    if envelope.type == EventType.CASE_OVERDUE and fact.closed_at is None:
        await escalate_overdue(session, envelope, fact, zone)


def _follow(fact: ApplicationFact, envelope: Envelope) -> None:
    payload = envelope.payload
    match envelope.type:
        case EventType.CASE_OPENED:
            fact.case_id = uuid.UUID(payload["case_id"])
            fact.department = envelope.department
            fact.waiting_for_citizen = False
        case EventType.CASE_CLAIMED | EventType.CASE_ASSIGNED:
            fact.assignee_id = uuid.UUID(payload["assignee_id"])
        case EventType.CASE_RELEASED:
            fact.assignee_id = None
        case EventType.CASE_INFO_REQUESTED:
            fact.waiting_for_citizen = True
        case EventType.APPLICATION_SUPPLEMENTED:
            fact.waiting_for_citizen = False
        case EventType.CASE_DEADLINE_CHANGED:
            fact.deadline = datetime.fromisoformat(payload["deadline"])
            fact.waiting_for_citizen = False
        case EventType.CASE_TRANSFERRED:
            fact.department = payload["to_department"]
            fact.item_code = payload["to_item_code"]
            fact.case_id = None
            fact.assignee_id = None
        case EventType.CASE_OVERDUE:
            if fact.closed_at is None:
                fact.overdue = True
        case EventType.CASE_DECIDED:
            _close(fact, payload["outcome"], envelope.occurred_at)
        case EventType.APPLICATION_WITHDRAWN:
            _close(fact, "withdrawn", envelope.occurred_at)
        case EventType.APPLICATION_RATED:
            fact.rating = int(payload["score"])
