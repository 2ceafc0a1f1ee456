"""Tables of the intake service (PostgreSQL schema `intake`)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import Timestamps, UUIDPrimaryKey, service_metadata
from shared.outbox import InboxMixin, OutboxMixin

SCHEMA = "intake"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class ApplicationStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    IN_REVIEW = "in_review"
    NEEDS_INFO = "needs_info"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Application(UUIDPrimaryKey, Timestamps, Base):
    """A citizen's application (申请) for one benefit item."""

    __tablename__ = "applications"
    __table_args__ = (
        # One open application per person and item; the service turns a clash into 409.
        Index(
            "uq_applications_open_per_person_item",
            "id_number_hash",
            "item_code",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
        ),
        Index("ix_applications_owner_created", "owner_openid", "created_at"),
    )

    item_code: Mapped[str] = mapped_column(String(40))
    department: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default=ApplicationStatus.SUBMITTED)
    outcome: Mapped[str | None] = mapped_column(String(20))
    # The citizen who owns it (WeChat openid); a grid worker's entry names the citizen here.
    owner_openid: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_by_role: Mapped[str] = mapped_column(String(20))

    applicant_name: Mapped[str] = mapped_column(String(50))
    id_number_enc: Mapped[str] = mapped_column(Text)
    id_number_hash: Mapped[str] = mapped_column(String(64))
    phone_enc: Mapped[str] = mapped_column(Text)
    id_number_masked: Mapped[str] = mapped_column(String(20))
    phone_masked: Mapped[str] = mapped_column(String(20))

    region_code: Mapped[str] = mapped_column(String(6))
    household: Mapped[dict[str, Any]] = mapped_column(JSONB)
    annual_income_per_capita: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    description: Mapped[str] = mapped_column(Text)

    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    case_id: Mapped[uuid.UUID | None]
    routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class TimelineEntry(Base):
    """One line of the plain-Chinese history a citizen sees (办理进度)."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)


class IdempotencyRecord(Base):
    """The first answer to an Idempotency-Key, replayed for the same key."""

    __tablename__ = "idempotency_records"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboxMessage(OutboxMixin, Base):
    pass


class InboxEvent(InboxMixin, Base):
    pass


__all__ = [
    "Application",
    "ApplicationStatus",
    "Base",
    "IdempotencyRecord",
    "InboxEvent",
    "OutboxMessage",
    "Outcome",
    "TimelineEntry",
]
