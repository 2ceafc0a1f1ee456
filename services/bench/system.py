"""The whole platform on this machine for `relief replay`: embedded PostgreSQL and Redis
under a home of its own with a fresh database, migrations, and the three APIs, relays and
workers as processes (`relief serve|relay|worker`), as in production."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis

from services.cli import serve_options, worker_options
from shared import migrations
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "verification", "notify")


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"not ready: {url}")


@dataclass
class System:
    database_url: str
    redis_url: str
    urls: dict[str, str]  # service -> base URL of its API
    pids: dict[str, int | None]  # process name -> pid

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each process with its children (uvicorn's workers,
        PostgreSQL's backends, those gone included): where the machine's time went."""
        used: dict[str, float] = {}
        for name, pid in self.pids.items():
            if pid is None:
                continue
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                total = 0.0
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        times = process.cpu_times()
                        total += times.user + times.system
                        total += times.children_user + times.children_system
                used[name] = total
        return used


def _processes(workers: int) -> list[tuple[list[str], str]]:
    cmd = [sys.executable, "-m", "services.cli"]
    apis = [
        ([*cmd, "serve", s, "--workers", str(workers), *serve_options(s)], f"{s}-api")
        for s in SERVICES
    ]
    processes = [
        *apis,
        ([*cmd, "relay", "intake"], "intake-relay"),
        ([*cmd, "relay", "verification"], "verification-relay"),
        *(([*cmd, "worker", s, *worker_options(s)], f"{s}-worker") for s in SERVICES),
    ]
    return processes


class BenchError(RuntimeError):
    """A bench or replay cannot run (a tool missing, the home taken): the message says why
    and what to do."""


class PlatformBusy(BenchError):
    """Another run is using the platform under this home."""


@contextlib.contextmanager
def only_run(home: Path) -> Iterator[None]:
    """Hold the home for this run alone: a second `relief replay` or `bench` on the same
    home would drop the database and empty the queues under the first."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "platform.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlatformBusy(
                f"another relief replay or bench is running on {home}: "
                "wait for it to end, or give this one another --home"
            ) from None
        yield  # the lock goes with the file's closing, however the run ends


@contextlib.contextmanager
def running(
    home: Path, database: str, *, workers: int, settings: dict[str, str]
) -> Iterator[System]:
    """Start everything, ready to serve, on an empty database and empty queues; stop it all
    when the block ends. `settings` are RELIEF_ variables for the services on top of the
    development defaults (the caller's own RELIEF_ variables are not passed on: this system
    is not the one they describe)."""
    with only_run(home):
        yield from _running(home, database, workers=workers, settings=settings)


@dataclass
class Databases:
    database_url: str
    redis_url: str
    pids: dict[str, int | None]  # "postgres", "redis" -> pid


@contextlib.contextmanager
def databases(home: Path, database: str) -> Iterator[Databases]:
    """Embedded PostgreSQL and Redis under `home` (durable, as in production), `database`
    dropped, created and migrated, the Redis database empty; stopped when the block ends."""
    postgres = EmbeddedPostgres(home, preferred_port=None, durable=True)
    queues = EmbeddedRedis(home, preferred_port=None, durable=True)
    started = [postgres.start(), queues.start()]
    try:
        postgres.drop_database(database)
        postgres.ensure_database(database)
        database_url, redis_url = postgres.url(database), queues.url(1)
        # What an earlier run left in the streams (one that was stopped halfway leaves
        # messages unread) would reach this run's consumers and be counted with its own.
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
        for service in SERVICES:
            migrations.upgrade(service, database_url)
        yield Databases(
            database_url, redis_url, {"postgres": postgres.pid(), "redis": queues.pid()}
        )
    finally:
        if started[1]:
            queues.stop()
        if started[0]:
            postgres.stop()


def service_env(
    home: Path, database_url: str, redis_url: str, settings: dict[str, str]
) -> dict[str, str]:
    """The environment of a service process on these servers: the development defaults with
    `settings` (RELIEF_ variables) on top; the caller's own RELIEF_ variables are not
    passed on, as this system is not the one they describe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env.update(
        {
            "RELIEF_ENV": "dev",
            "RELIEF_HOME": str(home),
            "RELIEF_DATABASE_URL": database_url,
            "RELIEF_REDIS_URL": redis_url,
            "RELIEF_LOG_LEVEL": "WARNING",
            "RELIEF_LOG_JSON": "true",
            **settings,
        }
    )
    return env


def _running(
    home: Path, database: str, *, workers: int, settings: dict[str, str]
) -> Iterator[System]:
    with databases(home, database) as found:
        ports = {service: free_port() for service in SERVICES}
        env = service_env(
            home,
            found.database_url,
            found.redis_url,
            {**{f"RELIEF_{s.upper()}_PORT": str(port) for s, port in ports.items()}, **settings},
        )
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pids = dict(found.pids)
        with contextlib.ExitStack() as stack:
            for argv, name in _processes(workers):
                pids[name] = stack.enter_context(process(argv, env, logs / f"{name}.log")).pid
            for port in ports.values():
                wait_ready(f"http://127.0.0.1:{port}/readyz")
            urls = {s: f"http://127.0.0.1:{port}" for s, port in ports.items()}
            yield System(found.database_url, found.redis_url, urls, pids)
