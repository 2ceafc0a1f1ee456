"""Stream retention: keep streams bounded without dropping what a consumer group still needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError


def _id_key(message_id: str) -> tuple[int, int]:
    millis, _, seq = message_id.partition("-")
    return int(millis), int(seq or 0)


async def trim_consumed(
    redis: Redis, stream: str, groups: Sequence[str], *, approximate: bool = True
) -> int:
    """Trim entries every expected group has read and acknowledged; never an entry some
    group has not yet received or still holds pending. Returns how many were removed.
    Nothing is trimmed while an expected group does not exist yet."""
    if not groups:
        return 0
    try:
        info: Any = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return 0
    by_name = {str(g["name"]): g for g in info}
    if any(name not in by_name for name in groups):
        return 0
    keep_from: tuple[int, int] | None = None
    for name in groups:
        group = by_name[name]
        candidates = [_id_key(str(group["last-delivered-id"]))]
        if int(group.get("pending", 0)):
            summary: Any = await redis.xpending(stream, name)
            if summary.get("min"):
                candidates.append(_id_key(str(summary["min"])))
        oldest_needed = min(candidates)
        keep_from = oldest_needed if keep_from is None else min(keep_from, oldest_needed)
    if keep_from is None or keep_from == (0, 0):
        return 0
    # MINID keeps entries >= the id: the last delivered one itself stays (harmless).
    # Approximate (~) trimming drops only whole internal nodes: cheap, and never more.
    removed: Any = await redis.xtrim(
        stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=approximate
    )
    return int(removed)
