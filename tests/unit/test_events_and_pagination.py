"""Tests for the stream envelope (shared.events) and cursor pagination (shared.pagination)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from shared.errors import InvalidInput
from shared.events import (
    DEAD_LETTER_STREAM,
    EVENTS_STREAM,
    Envelope,
    EventType,
    route_stream,
)
from shared.pagination import decode_cursor, encode_cursor

# --- events ----------------------------------------------------------------------------------


def _envelope(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID("0b6f3a52-8d0c-4d5e-9a61-2f0e7c1d9b11"),
        "type": EventType.CASE_DECIDED,
        "version": 3,
        "occurred_at": datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC),
        "application_id": uuid.UUID("6a0c2b4e-1f3d-4c5b-8e7a-9d0f1e2c3b4a"),
        "department": "civil",
        "payload": {
            "decision": "approved",
            "备注": "符合低保条件，已公示五天",
            "applicant": {"name": "张三", "village": "寻甸回族彝族自治县某村"},
            "stages": ["field_check", "village_review"],
            "amount": 12.5,
            "household": 4,
            "urgent": True,
            "note": None,
        },
        "correlation_id": "corr-寻甸-42",
    }
    fields.update(overrides)
    return Envelope(**fields)


def test_round_trip_keeps_every_field() -> None:
    original = _envelope()
    fields = original.to_fields()
    assert list(fields) == ["envelope"]
    assert isinstance(fields["envelope"], str)

    restored = Envelope.from_fields(fields)
    assert restored == original
    assert restored.event_id == original.event_id
    assert restored.type == "case.decided"
    assert restored.version == 3
    assert restored.occurred_at == original.occurred_at
    assert restored.occurred_at.tzinfo is not None
    assert restored.application_id == original.application_id
    assert restored.department == "civil"
    assert restored.payload == original.payload
    assert restored.payload["applicant"]["name"] == "张三"
    assert restored.payload["备注"] == "符合低保条件，已公示五天"
    assert restored.correlation_id == "corr-寻甸-42"


def test_round_trip_through_redis_style_strings() -> None:
    # Redis hands back the field as it was stored; a JSON re-encode must not lose anything.
    original = _envelope(
        occurred_at=datetime(2026, 3, 1, 16, 30, tzinfo=timezone(timedelta(hours=8)))
    )
    raw = {str(k): str(v) for k, v in original.to_fields().items()}
    restored = Envelope.from_fields(raw)
    assert restored == original
    assert restored.occurred_at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def test_defaults_and_missing_correlation_id() -> None:
    application_id = uuid.uuid4()
    before = datetime.now(UTC)
    env = Envelope(
        type=EventType.APPLICATION_SUBMITTED, application_id=application_id, department="edu"
    )
    assert env.version == 1
    assert env.payload == {}
    assert env.correlation_id is None
    assert before <= env.occurred_at <= datetime.now(UTC)
    assert (
        env.event_id
        != Envelope(
            type=EventType.APPLICATION_SUBMITTED, application_id=application_id, department="edu"
        ).event_id
    )
    restored = Envelope.from_fields(env.to_fields())
    assert restored == env
    assert restored.correlation_id is None


def test_envelope_is_frozen() -> None:
    env = _envelope()
    with pytest.raises(ValidationError):
        env.department = "edu"  # type: ignore[misc]


def test_stream_names() -> None:
    assert route_stream("civil") == "relief:route:civil"
    assert route_stream("water") == "relief:route:water"
    assert EVENTS_STREAM == "relief:events"
    assert DEAD_LETTER_STREAM == "relief:dead"


@pytest.mark.parametrize(
    "fields",
    [
        {"envelope": "not json at all"},
        {"envelope": ""},
        {"envelope": "{}"},
        {"envelope": '{"type": "case.decided", "department": "civil"}'},
        {
            "envelope": json.dumps(
                {"type": "case.decided", "application_id": "not-a-uuid", "department": "civil"}
            )
        },
        {"envelope": "[1, 2, 3]"},
    ],
)
def test_from_fields_refuses_garbage(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Envelope.from_fields(fields)


def test_from_fields_without_envelope_field_raises() -> None:
    with pytest.raises(KeyError):
        Envelope.from_fields({"something": "else"})


# --- pagination ------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    created_at = "2026-03-01T08:30:15.123456+00:00"
    row_id = uuid.uuid4()
    cursor = encode_cursor(created_at, row_id)
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, 2) == [created_at, str(row_id)]


def test_cursor_round_trip_of_other_values() -> None:
    values = ["张三", 'a,b"c', "", "x" * 50]
    assert decode_cursor(encode_cursor(*values), 4) == values
    assert decode_cursor(encode_cursor(42), 1) == ["42"]


def _assert_cursor_invalid(cursor: str, parts: int = 2) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_cursor(cursor, parts)
    assert info.value.code == "cursor_invalid"
    assert info.value.status_code == 422


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "%%%%%%",
        "中文游标",
        "",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd\x00").decode(),
        base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode(),
        base64.urlsafe_b64encode(b'"a string"').decode(),
        base64.urlsafe_b64encode(b"12").decode(),
        base64.urlsafe_b64encode(b"null").decode(),
    ],
)
def test_garbage_cursor_is_invalid(cursor: str) -> None:
    _assert_cursor_invalid(cursor)


@pytest.mark.parametrize("parts", [1, 3])
def test_wrong_number_of_parts_is_invalid(parts: int) -> None:
    _assert_cursor_invalid(encode_cursor("2026-03-01T08:30:15+00:00", uuid.uuid4()), parts)


@pytest.mark.parametrize("cursor", ["a", "abcde", "@@@@@@@@", "=====", "ab=cd"])
def test_non_base64_cursor_is_invalid(cursor: str) -> None:
    _assert_cursor_invalid(cursor)
