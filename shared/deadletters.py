"""The dead-letter stream, for people: what failed too often, and sending it again once the
cause is fixed. A message sent again goes back to the stream it came from, with its event
id: every consumer group sees it once more, and those that had applied it already find
their inbox row and change nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.events import DEAD_LETTER_STREAM


@dataclass(frozen=True)
class DeadLetter:
    id: str
    stream: str
    group: str
    message_id: str
    error: str
    fields: dict[str, str]


def _read(entry_id: str, data: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        id=entry_id,
        stream=data.get("stream", ""),
        group=data.get("group", ""),
        message_id=data.get("message_id", ""),
        error=data.get("error", ""),
        fields=json.loads(data.get("fields") or "{}"),
    )


async def list_dead(redis: Redis, *, count: int = 100) -> list[DeadLetter]:
    """The oldest `count` dead letters."""
    entries: Any = await redis.xrange(DEAD_LETTER_STREAM, count=count)
    return [_read(entry_id, data) for entry_id, data in entries]


async def send_again(redis: Redis, ids: list[str] | None = None) -> list[DeadLetter]:
    """Put dead letters back on their streams (all of them when `ids` is None) and take them
    off the dead-letter stream. Returns what was sent; ids not found are skipped."""
    if ids is None:
        entries: Any = await redis.xrange(DEAD_LETTER_STREAM)
    else:
        entries = []
        for entry_id in ids:
            entries.extend(await redis.xrange(DEAD_LETTER_STREAM, min=entry_id, max=entry_id))
    sent = []
    for entry_id, data in entries:
        letter = _read(entry_id, data)
        if not letter.stream or not letter.fields:
            continue  # nothing to send: leave it for a person to read
        # Added before it is deleted: a crash in between sends it twice, which is harmless.
        await redis.xadd(letter.stream, dict[Any, Any](letter.fields))
        await redis.xdel(DEAD_LETTER_STREAM, entry_id)
        sent.append(letter)
    return sent
