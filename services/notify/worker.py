"""Notify's consumer: keep the facts behind the closure rate up to date from events."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import ApplicationFact, InboxEvent
from services.notify.settings import NotifySettings
from shared.events import EVENTS_STREAM, Envelope, EventType
from shared.runner import run_consumer

GROUP = "notify"


async def handle_event(session: AsyncSession, envelope: Envelope, stream: str) -> None:
    match envelope.type:
        case EventType.APPLICATION_SUBMITTED:
            await session.execute(_fact_insert(envelope).on_conflict_do_nothing())
        case EventType.CASE_DECIDED | EventType.APPLICATION_WITHDRAWN:
            # An upsert: with several consumers the decision may be applied before the
            # submission, and must not be lost. The first closure wins.
            outcome = (
                "withdrawn"
                if envelope.type == EventType.APPLICATION_WITHDRAWN
                else envelope.payload["outcome"]
            )
            fact = _fact_insert(envelope).values(closed_at=envelope.occurred_at, outcome=outcome)
            await session.execute(
                fact.on_conflict_do_update(
                    index_elements=[ApplicationFact.application_id],
                    set_={"closed_at": fact.excluded.closed_at, "outcome": fact.excluded.outcome},
                    where=ApplicationFact.closed_at.is_(None),
                )
            )

        case EventType.CASE_TRANSFERRED:
            await session.execute(
                update(ApplicationFact)
                .where(ApplicationFact.application_id == envelope.application_id)
                .values(
                    department=envelope.payload["to_department"],
                    item_code=envelope.payload["to_item_code"],
                )
            )
        case EventType.CASE_DEADLINE_CHANGED:
            await session.execute(
                update(ApplicationFact)
                .where(ApplicationFact.application_id == envelope.application_id)
                .values(deadline=datetime.fromisoformat(envelope.payload["deadline"]))
            )
        case EventType.APPLICATION_RATED:
            rated = _fact_insert(envelope).values(rating=int(envelope.payload["score"]))
            await session.execute(
                rated.on_conflict_do_update(
                    index_elements=[ApplicationFact.application_id],
                    set_={"rating": rated.excluded.rating},
                )
            )


def _fact_insert(envelope: Envelope) -> Insert:
    payload = envelope.payload
    return insert(ApplicationFact).values(
        application_id=envelope.application_id,
        department=envelope.department,
        item_code=payload["item_code"],
        region_code=payload["region_code"],
        received_at=datetime.fromisoformat(payload["submitted_at"]),
        deadline=datetime.fromisoformat(payload["deadline"]),
    )


async def run_worker(settings: NotifySettings, stop: asyncio.Event | None = None) -> None:
    await run_consumer(
        settings,
        service="notify",
        group=GROUP,
        streams=[EVENTS_STREAM],
        inbox_model=InboxEvent,
        handler=handle_event,
        stop=stop,
    )
