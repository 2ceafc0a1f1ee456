"""Tables of the notify service (PostgreSQL schema `notify`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, SmallInteger, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata
from shared.outbox import InboxMixin

SCHEMA = "notify"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class ApplicationFact(Base):
    """What the closure rate (办结率) is computed from: one row per application, kept up to
    date from events."""

    __tablename__ = "application_facts"
    __table_args__ = (
        Index("ix_application_facts_received_at", "received_at"),
        Index("ix_application_facts_department_item", "department", "item_code"),
    )

    application_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    department: Mapped[str] = mapped_column(String(40))
    item_code: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(20))
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class InboxEvent(InboxMixin, Base):
    pass
