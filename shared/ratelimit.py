"""Rate limits kept in Redis (the `limits` library, moving window), answered with 429 and
Retry-After."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from shared.errors import AppError


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"
    message = "操作过于频繁，请稍后再试"


class RateLimiter:
    def __init__(self, redis_url: str, *, key_prefix: str = "relief:ratelimit") -> None:
        scheme, sep, rest = redis_url.partition("://")
        self._storage = RedisStorage(
            f"async+{scheme}{sep}{rest}", implementation="redispy", key_prefix=key_prefix
        )
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, RateLimitItem] = {}

    def _rule(self, rule: str) -> RateLimitItem:
        if rule not in self._rules:
            self._rules[rule] = parse(rule)
        return self._rules[rule]

    async def hit(self, rule: str, scope: str, key: str, *, message: str | None = None) -> None:
        """Count one hit of `key` under `rule` (e.g. "10/minute"); 429 once it is used up."""
        item = self._rule(rule)
        if await self._strategy.hit(item, scope, key):
            return
        stats = await self._strategy.get_window_stats(item, scope, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            message, headers={"Retry-After": str(retry_after)}, details={"retry_after": retry_after}
        )
