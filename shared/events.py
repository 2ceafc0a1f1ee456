"""The event envelope carried on every stream, and the stream names."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EVENTS_STREAM = "relief:events"
DEAD_LETTER_STREAM = "relief:dead"
ROUTE_STREAM_PREFIX = "relief:route:"


def route_stream(department: str) -> str:
    return f"{ROUTE_STREAM_PREFIX}{department}"


def consumer_groups(stream: str) -> tuple[str, ...]:
    """The groups that must have read an entry before it may be trimmed from `stream`."""
    if stream == EVENTS_STREAM:
        return ("intake", "notify")
    if stream.startswith(ROUTE_STREAM_PREFIX):
        return ("verification",)
    return ()


class EventType(enum.StrEnum):
    APPLICATION_SUBMITTED = "application.submitted"
    APPLICATION_SUPPLEMENTED = "application.supplemented"
    APPLICATION_WITHDRAWN = "application.withdrawn"
    APPLICATION_RATED = "application.rated"
    APPLICATION_ATTACHMENT_ADDED = "application.attachment_added"
    CASE_OPENED = "case.opened"
    CASE_CLAIMED = "case.claimed"
    CASE_RELEASED = "case.released"
    CASE_INFO_REQUESTED = "case.info_requested"
    CASE_TRANSFERRED = "case.transferred"
    CASE_STAGE_PASSED = "case.stage_passed"
    CASE_DECIDED = "case.decided"
    CASE_OVERDUE = "case.overdue"
    CASE_ASSIGNED = "case.assigned"
    CASE_DEADLINE_CHANGED = "case.deadline_changed"


class Envelope(BaseModel):
    """`{event_id, type, version, occurred_at, application_id, department, payload}`.

    `correlation_id` follows one application across services in the logs.
    """

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    application_id: uuid.UUID
    department: str
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None

    def to_fields(self) -> dict[Any, Any]:
        return self.fields_of(self.model_dump_json())

    @staticmethod
    def fields_of(envelope_json: str) -> dict[Any, Any]:  # redis-py's field types are invariant
        """A stream entry's fields for an envelope already printed as JSON."""
        return {"envelope": envelope_json}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Envelope:
        return cls.model_validate_json(fields["envelope"])
