"""The rate limiter on a real Redis: a moving window per key, several limits in one call,
all or nothing, and a Retry-After that tells when the oldest hit leaves the window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.ratelimit import Limit, RateLimiter, TooManyRequests
from tests.conftest import Infra


@pytest.fixture
async def limiter(infra: Infra, redis: Redis) -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(infra.redis_url)
    yield limiter
    await limiter.aclose()


async def _refusal(limiter: RateLimiter, limits: list[Limit]) -> TooManyRequests | None:
    try:
        await limiter.hit_all(limits)
    except TooManyRequests as exc:
        assert exc.headers is not None
        return exc
    return None


def _retry_after(refused: TooManyRequests) -> int:
    return int((refused.headers or {})["Retry-After"])


async def test_a_key_is_refused_once_its_window_is_full_and_others_are_not(
    limiter: RateLimiter,
) -> None:
    for _ in range(3):
        await limiter.hit("3/minute", "submit-user", "citizen-a")
    refused = await _refusal(limiter, [Limit("3/minute", "submit-user", "citizen-a")])
    assert refused is not None
    assert refused.code == "rate_limited"
    assert 0 < _retry_after(refused) <= 60
    assert refused.details == {"retry_after": _retry_after(refused)}
    # Another key, another scope, another rule: windows of their own.
    await limiter.hit("3/minute", "submit-user", "citizen-b")
    await limiter.hit("3/minute", "submit-ip", "citizen-a")
    await limiter.hit("4/minute", "submit-user", "citizen-a")


async def test_a_request_under_two_limits_counts_under_neither_when_one_refuses(
    limiter: RateLimiter,
) -> None:
    per_user, per_ip = "2/hour", "3/hour"

    def both(user: str) -> list[Limit]:
        return [Limit(per_user, "submit-user", user), Limit(per_ip, "submit-ip", "10.0.0.1")]

    await limiter.hit_all(both("citizen-a"))
    await limiter.hit_all(both("citizen-a"))
    # citizen-a's own limit is used up: refused, and the address is not charged for it.
    for _ in range(5):
        assert await _refusal(limiter, both("citizen-a")) is not None
    await limiter.hit_all(both("citizen-b"))  # the address's third hit
    refused = await _refusal(limiter, both("citizen-c"))
    assert refused is not None  # now the address's window is full
    assert 3000 < _retry_after(refused) <= 3600
    # ... and citizen-c was not charged either: the address alone refused.
    await limiter.hit("2/hour", "submit-user", "citizen-c")
    await limiter.hit("2/hour", "submit-user", "citizen-c")
    assert await _refusal(limiter, [Limit(per_user, "submit-user", "citizen-c")]) is not None


async def test_a_requests_keys_share_one_cluster_slot(limiter: RateLimiter, redis: Redis) -> None:
    """Redis Cluster runs a script only on keys of one slot: the hash tag, the part of
    the key between its first braces, is all that decides it."""
    await limiter.hit_all(
        [Limit("5/hour", "submit-user", "u-1"), Limit("9/hour", "submit-ip", "ip")]
    )
    keys = [key async for key in redis.scan_iter(match="relief:*")]
    assert len(keys) == 2
    assert {key[key.index("{") + 1 : key.index("}")] for key in keys} == {"ratelimit"}


async def test_a_window_moves_hits_leave_it_as_they_age(limiter: RateLimiter) -> None:
    await limiter.hit("2/second", "login-ip", "10.0.0.2")
    await asyncio.sleep(0.6)
    await limiter.hit("2/second", "login-ip", "10.0.0.2")
    refused = await _refusal(limiter, [Limit("2/second", "login-ip", "10.0.0.2")])
    assert refused is not None
    assert _retry_after(refused) == 1
    await asyncio.sleep(0.5)  # the first hit is now over a second old; the second is not
    await limiter.hit("2/second", "login-ip", "10.0.0.2")
    assert await _refusal(limiter, [Limit("2/second", "login-ip", "10.0.0.2")]) is not None


async def test_a_redis_that_lost_the_script_still_counts_and_refuses(
    limiter: RateLimiter, redis: Redis
) -> None:
    # A Redis restarted or flushed forgets its scripts: the first hit loads it again.
    await limiter.hit("2/minute", "submit-user", "citizen-c")
    await redis.script_flush()
    await limiter.hit("2/minute", "submit-user", "citizen-c")
    assert await redis.script_exists(limiter._script.sha) == [True]
    assert await _refusal(limiter, [Limit("2/minute", "submit-user", "citizen-c")]) is not None
