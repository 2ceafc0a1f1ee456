"""Real PostgreSQL and Redis for the whole suite: embedded ones under .relief/test by
default, or the servers named by RELIEF_TEST_DATABASE_URL / RELIEF_TEST_REDIS_URL."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared import migrations
from shared.embedded import provide

ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = ROOT / ".relief" / "test"
TEST_DATABASE = "relief_test"
SERVICES = ("intake", "verification", "notify")


@dataclass(frozen=True)
class Infra:
    database_url: str
    redis_url: str
    home: Path


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Test sessions on one checkout share the embedded servers and recreate the database:
    # let them run one after another instead of wiping each other's data.
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    with (TEST_HOME / "session.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _provide()


def _provide() -> Iterator[Infra]:
    infrastructure = provide(
        TEST_HOME,
        database_url=os.environ.get("RELIEF_TEST_DATABASE_URL"),
        redis_url=os.environ.get("RELIEF_TEST_REDIS_URL"),
        database_name=TEST_DATABASE,
        durable=False,
        preferred_ports=(None, None),
    )
    try:
        if infrastructure.postgres is not None:
            # A fresh database each run: migrations are tested from empty every time.
            infrastructure.postgres.drop_database(TEST_DATABASE)
            infrastructure.postgres.ensure_database(TEST_DATABASE)
        for service in SERVICES:
            migrations.upgrade(service, infrastructure.database_url)
        os.environ["RELIEF_ENV"] = "test"
        os.environ["RELIEF_DATABASE_URL"] = infrastructure.database_url
        os.environ["RELIEF_REDIS_URL"] = infrastructure.redis_url
        os.environ["RELIEF_LOG_JSON"] = "false"
        yield Infra(infrastructure.database_url, infrastructure.redis_url, TEST_HOME)
    finally:
        infrastructure.stop_started()


@pytest.fixture
def server_home(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A folder for a test's own embedded servers, inside the repository's .relief/. Not under
    pytest's tmp_path: pytest strips the search bit from /tmp/pytest-of-<user> whenever a
    session starts, and PostgreSQL runs as another user that must reach its data."""
    home = TEST_HOME / "servers" / f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)
