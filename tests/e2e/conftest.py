"""`relief up` as a real process tree, for the end-to-end and shutdown tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import pytest

from shared.embedded import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def sibling_database(url: str, name: str) -> str:
    """Drop and create database `name` on the server of `url`; return its URL."""

    async def recreate() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class RunningSystem:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    home: Path
    env: dict[str, str]
    log_path: Path

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def tree(self) -> list[psutil.Process]:
        """The supervisor and every process it started (children live in their own sessions,
        but stay its descendants)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def base_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RELIEF_") and k not in {"PYTEST_CURRENT_TEST"}
    }
    env.update({"RELIEF_HOME": str(home), "RELIEF_ENV": "dev", "RELIEF_LOG_JSON": "true"})
    return env


@contextlib.contextmanager
def relief_up(env: dict[str, str], home: Path, timeout: float = 120) -> Iterator[RunningSystem]:
    ports = {"intake": free_port(), "verification": free_port(), "notify": free_port()}
    env = {**env, **{f"RELIEF_{s.upper()}_PORT": str(p) for s, p in ports.items()}}
    log_path = home / "relief-up.log"
    home.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    system = RunningSystem(process, ports, home, env, log_path)
    try:
        deadline = time.monotonic() + timeout
        while "is up" not in system.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"relief up did not come up:\n{system.log()[-5000:]}")
            time.sleep(0.3)
        yield system
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for proc in system.tree():
                    with contextlib.suppress(psutil.Error):
                        proc.kill()


def wait_for(check: object, timeout: float = 30.0, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
