"""Fuzz and property tests share the suite's real PostgreSQL and Redis (tests/conftest.py).

The integration conftest's session fixtures are reused; its autouse `clean` is not, so the
pure property tests do not pay for a database, and the API fuzzer can keep one seeded world
for several tests. Whatever needs a clean slate asks for `fresh` (or calls `empty_everything`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.redis import create_redis
from tests.conftest import Infra
from tests.integration.conftest import empty_everything, engine, sessionmaker

__all__ = ["engine", "fresh", "sessionmaker"]

# Repeatable runs for CI: the same inputs every time, no example database to replay from
# (a failure is reported by its input, not left to find again), no wall-clock deadline on
# examples that touch a database.
settings.register_profile(
    "relief",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("relief")


# Hypothesis mixes into its draws constants it finds in the project's own modules, among
# those imported so far: the same test would draw other inputs when run alone than in the
# whole suite, or after an unrelated edit. Derandomized should mean the same inputs every
# time, so go without them. An internal hook: if it moves, runs are less stable, not wrong.
try:
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants
except ImportError:  # pragma: no cover
    pass
else:
    if hasattr(providers, "_get_local_constants"):
        providers._get_local_constants = Constants

# Thousands of requests: httpx's line per request would drown what `pytest -s` should show.
logging.getLogger("httpx").setLevel(logging.WARNING)
# Malformed multipart bodies are the fuzzer's doing; the parser's warning about each is noise.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


@pytest.fixture
async def fresh(infra: Infra, engine: AsyncEngine) -> AsyncIterator[Redis]:
    """A clean database and Redis for one test; yields a Redis client."""
    client = create_redis(infra.redis_url)
    await empty_everything(engine, client)
    yield client
    await client.aclose()
