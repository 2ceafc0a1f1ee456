"""Tables of the intake service (PostgreSQL schema `intake`)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
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
        Index(
            "ix_applications_unrouted",
            "created_at",
            postgresql_where=text("routed_at IS NULL AND status = 'submitted'"),
        ),
    )

    item_code: Mapped[str] = mapped_column(String(40))
    department: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default=ApplicationStatus.SUBMITTED)
    outcome: Mapped[str | None] = mapped_column(String(20))
    # The citizen who submitted it (WeChat openid); empty for a grid worker's entry, which
    # the citizen sees through a binding of his ID number and phone.
    owner_openid: Mapped[str | None] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(64), index=True)
    submitted_by_role: Mapped[str] = mapped_column(String(20))
    submitted_by_name: Mapped[str | None] = mapped_column(String(50))

    applicant_name: Mapped[str] = mapped_column(String(50))
    id_number_enc: Mapped[str] = mapped_column(Text)
    id_number_hash: Mapped[str] = mapped_column(String(64), index=True)
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_hash: Mapped[str] = mapped_column(String(64))
    id_number_masked: Mapped[str] = mapped_column(String(20))
    phone_masked: Mapped[str] = mapped_column(String(20))

    region_code: Mapped[str] = mapped_column(String(6))
    household: Mapped[dict[str, Any]] = mapped_column(JSONB)
    annual_income_per_capita: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    description: Mapped[str] = mapped_column(Text)
    # The item's own form (catalog-defined fields), normalised.
    form: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Monitoring-line pre-screen: a hint for clerks, never a refusal.
    prescreen: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    case_id: Mapped[uuid.UUID | None]
    # End-to-end acknowledgement: routed only when the department's case.opened comes back;
    # until then the route message (always this event id) is published again now and then.
    route_event_id: Mapped[uuid.UUID | None]
    routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reroutes: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    last_routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # What the clerk asked for while the application is `needs_info`.
    info_request: Mapped[str | None] = mapped_column(Text)
    withdraw_reason: Mapped[str | None] = mapped_column(Text)
    # 好差评: one rating (1-5) after closure.
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CitizenBinding(Base):
    """A WeChat user is the person with this name, ID number and phone: he sees the
    applications made for that person, also those a grid worker entered for him. All three
    must match, so knowing someone's ID number alone shows nothing."""

    __tablename__ = "citizen_bindings"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    id_number_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class GridWorker(Base):
    """A village grid worker (网格员) who reports on citizens' behalf (代报) in his county."""

    __tablename__ = "grid_workers"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    region_code: Mapped[str] = mapped_column(String(6))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WechatSession(Base):
    """WeChat's session_key for an openid: kept server-side (encrypted), never sent out."""

    __tablename__ = "wechat_sessions"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_key_enc: Mapped[str] = mapped_column(Text)
    unionid: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshToken(Base):
    """Opaque refresh tokens, stored as hashes. Each use replaces the token; using a replaced
    one again (a stolen copy) revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    openid: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Attachment(Base):
    """Evidence (photo or PDF) of an application; the bytes live in the object store under
    their SHA-256."""

    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


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
    "Attachment",
    "Base",
    "CitizenBinding",
    "GridWorker",
    "IdempotencyRecord",
    "InboxEvent",
    "OutboxMessage",
    "Outcome",
    "RefreshToken",
    "TimelineEntry",
    "WechatSession",
]
