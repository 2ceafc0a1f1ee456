"""Headless Chromium against the notify service run as a real process, over a database
filled with known numbers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared import migrations
from shared.catalog import catalog
from shared.embedded import free_port
from shared.regions import regions
from tests.conftest import ROOT, Infra
from tests.e2e.conftest import base_env, sibling_database

SCREENSHOTS = ROOT / "runs" / "browser"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: CI must install Debian's `chromium` package")
        pytest.skip("headless browser tests need Chromium: apt-get install -y chromium")
    return path


def run_chromium(
    chromium: str, url: str, profile: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One headless page load. Virtual time stands still while requests are pending, so the
    budget is page time after the data arrived, not a wall-clock race."""
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@dataclass(frozen=True)
class KnownFacts:
    """What `notify.application_facts` holds for the browser tests: the province's numbers."""

    received: int = 466_200
    closed: int = 462_500
    overdue: int = 137

    @property
    def open(self) -> int:
        return self.received - self.closed


# One statement: 466,200 rows one by one would take minutes. Row g is closed if g <= closed;
# closed rows were received over the last 660 days and closed 1 to 400 hours later (some
# after the 15-day deadline, none in the future). Of the open rows the first `overdue` are
# past their deadline and flagged overdue (as case.overdue does); the rest arrived in the
# last 14 days. Every 10th is rejected, every 50th withdrawn, every 4th rated.
_FACTS_SQL = """
INSERT INTO notify.application_facts
    (application_id, department, item_code, region_code, received_at, deadline,
     closed_at, outcome, rating, overdue)
SELECT gen_random_uuid(), f.department, f.item_code, f.region_code, f.received_at,
       f.received_at + interval '15 days',
       CASE WHEN f.closed
            THEN f.received_at + make_interval(hours => 1 + (f.g * 7) % least(400, f.age_hours))
       END,
       CASE WHEN NOT f.closed THEN NULL
            WHEN f.g % 50 = 0 THEN 'withdrawn'
            WHEN f.g % 10 = 0 THEN 'rejected'
            ELSE 'approved' END,
       CASE WHEN f.closed AND f.g % 4 = 0 THEN 5 - ((f.g / 4) % 5) / 2 END,
       NOT f.closed AND f.g - $4 <= $5
FROM (
    SELECT g,
           g <= $4 AS closed,
           ($1::text[])[1 + g % cardinality($1::text[])] AS item_code,
           ($2::text[])[1 + g % cardinality($2::text[])] AS department,
           ($3::text[])[1 + (g / 7) % cardinality($3::text[])] AS region_code,
           (1 + g % 660) * 24 - 1 AS age_hours,
           CASE
               WHEN g <= $4 THEN now() - make_interval(days => 1 + g % 660, mins => (g * 37) % 1440)
               WHEN g - $4 <= $5 THEN now() - interval '16 days' - make_interval(hours => g - $4)
               ELSE now() - make_interval(mins => ((g - $4) * 53) % (14 * 1440))
           END AS received_at
    FROM generate_series(1, $6::int) AS g
) AS f
"""


async def _fill(database_url: str, facts: KnownFacts) -> None:
    items = catalog().items
    counties = sorted(regions().counties)[:24]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            _FACTS_SQL,
            [i.code for i in items],
            [i.department for i in items],
            counties,
            facts.closed,
            facts.overdue,
            facts.received,
        )
        await conn.execute("ANALYZE notify.application_facts")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def facts_database(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, KnownFacts]:
    """A database of its own (the integration tests truncate the shared one), with the notify
    schema migrated, the facts inserted and the closure counters rebuilt from them by the
    command ops would run after a restore."""
    url = sibling_database(infra.database_url, "relief_browser")
    migrations.upgrade("notify", url)
    facts = KnownFacts()
    asyncio.run(_fill(url, facts))
    env = notify_env(tmp_path_factory.mktemp("rebuild"), url, redis_url(infra))
    rebuilt = subprocess.run(
        [sys.executable, "-m", "services.cli", "metrics", "rebuild"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    return url, facts


def redis_url(infra: Infra) -> str:
    """A Redis database of the test server that the other tests leave alone."""
    return infra.redis_url.rsplit("/", 1)[0] + "/3"


def notify_env(home: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = base_env(home)
    env["RELIEF_DATABASE_URL"] = database_url
    env["RELIEF_REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def _serving(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"notify did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def notify_server(env: dict[str, str], home: Path) -> Iterator[str]:
    """`relief serve notify` as a process; its base URL."""
    home.mkdir(parents=True, exist_ok=True)
    served = [sys.executable, "-m", "services.cli", "serve", "notify"]
    with _serving(served, env, home / "notify.log") as url:
        yield url
