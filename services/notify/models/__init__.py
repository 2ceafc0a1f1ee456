"""Tables of the notify service (PostgreSQL schema `notify`)."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata
from shared.outbox import InboxMixin

SCHEMA = "notify"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class ApplicationFact(Base):
    """One row per application, kept up to date from events: what the closure rate (办结率)
    is computed from, and what deadline chasing follows."""

    __tablename__ = "application_facts"
    __table_args__ = (
        Index("ix_application_facts_received_at", "received_at"),
        Index("ix_application_facts_department_item", "department", "item_code"),
        Index(
            "ix_application_facts_chase",
            "deadline",
            postgresql_where=sql("closed_at IS NULL"),
        ),
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
    # Set by case.overdue (verification knows when the clock stood still).
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sql("false"))
    # Whom to tell: the citizen's openid (if he applied himself) and his phone, sealed.
    recipient_openid: Mapped[str | None] = mapped_column(String(64))
    recipient_phone_enc: Mapped[str | None] = mapped_column(Text)
    # The case being worked now, and its clerk (deadline reminders).
    case_id: Mapped[uuid.UUID | None]
    assignee_id: Mapped[uuid.UUID | None]
    waiting_for_citizen: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql("false")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ClosureRollup(Base):
    """Counters behind the closure-rate API, kept incrementally: per item (with its
    department) or per region, per day of receipt. `closed_on_day` counts by closure day."""

    __tablename__ = "closure_rollups"

    dimension: Mapped[str] = mapped_column(String(10), primary_key=True)  # "item" | "region"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department: Mapped[str] = mapped_column(String(40), server_default="")
    received: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    approved: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    rejected: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    withdrawn: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    on_time: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    overdue_open: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    rating_sum: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    rating_count: Mapped[int] = mapped_column(Integer, server_default=sql("0"))
    closed_on_day: Mapped[int] = mapped_column(Integer, server_default=sql("0"))


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # kept failing: a dead-letter record ops can replay


class Notification(Base):
    """One message to a citizen about one event; at most one per event."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=sql("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    application_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(30))
    text: Mapped[str] = mapped_column(Text)
    template_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    recipient_openid: Mapped[str | None] = mapped_column(String(64))
    recipient_phone_enc: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default=NotificationStatus.PENDING)
    channel: Mapped[str | None] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=sql("0"))
    wechat_refused: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql("false")
    )
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    """The delivery log: every try on every channel, with what the provider answered."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(10))
    ok: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StaffReminder(Base):
    """催办/督办: a reminder to the clerk before the deadline, an escalation to the
    supervisors of the department and prefecture once overdue; one of each per case."""

    __tablename__ = "staff_reminders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    case_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(20))  # "due_soon" | "overdue"
    application_id: Mapped[uuid.UUID]
    department: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6))
    assignee_id: Mapped[uuid.UUID | None]
    text: Mapped[str] = mapped_column(Text)
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("uq_staff_reminders_case_kind", "case_id", "kind", unique=True),)


class InboxEvent(InboxMixin, Base):
    pass
