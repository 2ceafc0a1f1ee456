"""Tables of the verification service (PostgreSQL schema `verification`)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, query_expression

from shared.db import Timestamps, UUIDPrimaryKey, service_metadata
from shared.outbox import InboxMixin, OutboxMixin

SCHEMA = "verification"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class CaseStatus(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    FIELD_CHECK = "field_check"
    VILLAGE_REVIEW = "village_review"
    TOWNSHIP_AUDIT = "township_audit"
    COUNTY_DECISION = "county_decision"
    DECIDED = "decided"
    TRANSFERRED = "transferred"


ENDED_STATUSES = (CaseStatus.DECIDED, CaseStatus.TRANSFERRED)


class StaffUser(UUIDPrimaryKey, Timestamps, Base):
    """A clerk, supervisor or admin account."""

    __tablename__ = "staff_users"

    username: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(50))
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20))
    department: Mapped[str | None] = mapped_column(String(40))
    # A county code for clerks, a prefecture code for supervisors, the province for admins.
    region_code: Mapped[str] = mapped_column(String(6))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Bumped on disable or password reset: tokens carrying an older version stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Case(UUIDPrimaryKey, Timestamps, Base):
    """One department's verification of one application (案件)."""

    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_queue", "department", "region_code", "status", "deadline"),)

    application_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # The route message that opened this case: a redelivery finds it and opens nothing new,
    # but announces the case again (same event id) in case intake never heard of it.
    route_event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    opened_event_id: Mapped[uuid.UUID | None]
    department: Mapped[str] = mapped_column(String(40))
    item_code: Mapped[str] = mapped_column(String(40))
    region_code: Mapped[str] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(20), default=CaseStatus.OPEN)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    applicant_name: Mapped[str] = mapped_column(String(50))
    id_number_enc: Mapped[str] = mapped_column(Text)
    phone_enc: Mapped[str] = mapped_column(Text)
    id_number_masked: Mapped[str] = mapped_column(String(20))
    phone_masked: Mapped[str] = mapped_column(String(20))
    household: Mapped[dict[str, Any]] = mapped_column(JSONB)
    description: Mapped[str] = mapped_column(Text)
    form: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Intake's monitoring-line pre-screen: a hint, never a decision.
    prescreen: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    submitted_by_role: Mapped[str] = mapped_column(String(20), server_default="citizen")
    # While the citizen is asked for information (needs_info on his side) the deadline
    # clock stops; on his answer the deadline moves by the time it stood still.
    info_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    info_request: Mapped[str | None] = mapped_column(Text)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    overdue_announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # 实地调查 field investigation, recorded before the stage can be passed.
    field_check: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # 村评议公示 village review and public notice.
    notice_text: Mapped[str | None] = mapped_column(Text)
    notice_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notice_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    transferred_from_case_id: Mapped[uuid.UUID | None]
    transferred_to_department: Mapped[str | None] = mapped_column(String(40))

    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(20))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)

    # Not a column: the application's attachments (id, content_type, size, filename,
    # added_at), loaded in the same query as the case by the queries whose answer lists
    # them (cases.repository); None where a query did not load them.
    attachments: Mapped[list[dict[str, Any]] | None] = query_expression()


class CaseAttachment(Base):
    """Evidence the applicant uploaded; the bytes are in the shared object store."""

    __tablename__ = "case_attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # intake's attachment id
    application_id: Mapped[uuid.UUID] = mapped_column(index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditAction(enum.StrEnum):
    TRANSITION = "transition"
    FIELD_CHECK = "field_check"
    REQUEST_INFO = "request_info"
    SUPPLEMENT = "supplement"
    REVEAL = "reveal"
    ASSIGN = "assign"
    DEADLINE = "deadline"
    OVERDUE = "overdue"


class AuditEntry(Base):
    """Append-only record of everything done to a case: who, when, what changed, why.
    A database trigger refuses UPDATE and DELETE (see the migration)."""

    __tablename__ = "case_audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), index=True)
    action: Mapped[str] = mapped_column(String(20), server_default=AuditAction.TRANSITION)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None]
    actor_name: Mapped[str | None] = mapped_column(String(50))
    actor_role: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxMessage(OutboxMixin, Base):
    pass


class InboxEvent(InboxMixin, Base):
    pass
