"""Rate limits kept in Redis (a moving window per key), answered with 429 and Retry-After.

A request may be under several limits at once (a submission: per citizen and per address).
They are checked and counted in one Redis call, all or nothing: a refused request counts
against none of them. The rules are written as the `limits` library parses them
("10/minute", "120 per hour"); the window is the one its moving-window strategy keeps — a
list per key of the last `amount` hits' times, newest first — kept by one Lua script of
ours, because that library takes one limit per call (a round trip each).

A script's keys must share a slot in Redis Cluster: the keys carry the hash tag
`{ratelimit}`, so all of them live on one primary (two commands per submission, far below
what one carries; see docs/scaling.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse
from redis.exceptions import NoScriptError

from shared.errors import AppError
from shared.redis import create_redis


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"
    message = "操作过于频繁，请稍后再试"


# KEYS: one list per limit. ARGV: per key, its amount and its window in seconds.
# Returns {0} when the hit is counted under every key; otherwise {i, seconds}: the first
# key whose window is full (1-based) and the seconds until its oldest hit leaves it.
# Redis's own clock, so that every API process counts on the same one.
_HIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local oldest = redis.call('LINDEX', key, amount - 1)
  if oldest and tonumber(oldest) > now - window then
    return {i, tostring(tonumber(oldest) + window - now)}
  end
end
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  redis.call('LPUSH', key, string.format('%.6f', now))
  redis.call('LTRIM', key, 0, amount - 1)
  redis.call('EXPIRE', key, math.ceil(window))
end
return {0}
"""


@dataclass(frozen=True)
class Limit:
    """One limit a request is under: `rule` (e.g. "10/minute") for `key` within `scope`."""

    rule: str
    scope: str
    key: str


class RateLimiter:
    def __init__(self, redis_url: str, *, key_prefix: str = "relief:{ratelimit}") -> None:
        self._redis = create_redis(redis_url)
        self._script = self._redis.register_script(_HIT)
        self._prefix = key_prefix
        self._rules: dict[str, RateLimitItem] = {}

    def _rule(self, rule: str) -> RateLimitItem:
        if rule not in self._rules:
            self._rules[rule] = parse(rule)
        return self._rules[rule]

    async def hit(self, rule: str, scope: str, key: str, *, message: str | None = None) -> None:
        """Count one hit of `key` under `rule` (e.g. "10/minute"); 429 once it is used up."""
        await self.hit_all([Limit(rule, scope, key)], message=message)

    async def hit_all(self, limits: Sequence[Limit], *, message: str | None = None) -> None:
        """Count one hit under every one of `limits`, in one round trip; 429, counting
        none, if any of them is used up."""
        keys: list[str] = []
        args: list[int] = []
        for limit in limits:
            item = self._rule(limit.rule)
            keys.append(f"{self._prefix}:{limit.scope}:{item.key_for(limit.key)}")
            args += [item.amount, item.get_expiry()]
        try:
            # EVALSHA itself: through redis-py's Script object a submission cost 1.2% more.
            refused = await self._redis.evalsha(self._script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a Redis that restarted, or was flushed: load it and run it
            refused = await self._script(keys=keys, args=args)
        if not int(refused[0]):
            return
        retry_after = max(1, math.ceil(float(refused[1])))
        raise TooManyRequests(
            message, headers={"Retry-After": str(retry_after)}, details={"retry_after": retry_after}
        )

    async def aclose(self) -> None:
        await self._redis.aclose()
