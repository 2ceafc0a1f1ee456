"""Cursor pagination: an opaque cursor holding the sort key of the last row returned."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from shared.errors import InvalidInput

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("分页参数无效", code="cursor_invalid") from exc
    if not isinstance(values, list) or len(values) != parts:
        raise InvalidInput("分页参数无效", code="cursor_invalid")
    return [str(v) for v in values]


Keyset = tuple[datetime, uuid.UUID]
"""The sort key lists use: a timestamp, then the row's id to break ties."""


def decode_keyset(cursor: str | None) -> Keyset | None:
    if not cursor:
        return None
    moment, row_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(moment), uuid.UUID(row_id)
    except ValueError as exc:
        raise InvalidInput("分页参数无效", code="cursor_invalid") from exc


_Row = TypeVar("_Row")


def split_page(
    rows: Sequence[_Row], limit: int, key: Callable[[_Row], Keyset]
) -> tuple[list[_Row], str | None]:
    """Rows fetched with `limit + 1`: the page, and the cursor of the next page if any."""
    page = list(rows[:limit])
    if len(rows) <= limit:
        return page, None
    moment, row_id = key(page[-1])
    return page, encode_cursor(moment.isoformat(), row_id)
