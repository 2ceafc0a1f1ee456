"""Cursor pagination: an opaque cursor holding the sort key of the last row returned."""

from __future__ import annotations

import base64
import json
from typing import Any

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
