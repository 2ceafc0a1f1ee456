"""`relief serve --workers N`: N processes, each with its own SO_REUSEPORT socket, all
serving; a killed one comes back; SIGTERM stops them all. Each, started, collects garbage
as `shared.lifecycle.tune_gc` sets it."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from shared.embedded import free_port
from shared.lifecycle import GC_THRESHOLDS
from tests.conftest import ROOT

SERVE = (
    "from shared.serving import serve; import sys; "
    "serve('tests.integration.pid_app:create_app', host='127.0.0.1', port=int(sys.argv[1]), "
    "workers=int(sys.argv[2]), log_level='warning')"
)


def _pids_answering(port: int, tries: int = 200) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(seen) < 2:
        for _ in range(tries):
            try:
                # A new connection each time: the kernel spreads connections, not requests.
                seen.add(httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text)
            except httpx.HTTPError:
                time.sleep(0.1)
            if len(seen) == 2:
                break
    return seen


def test_connections_spread_over_processes_that_come_back_and_stop_together() -> None:
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", SERVE, str(port), "2"], cwd=ROOT)
    try:
        first = _pids_answering(port)
        assert len(first) == 2
        children = {str(p.pid) for p in psutil.Process(parent.pid).children()}
        assert first <= children

        os.kill(int(next(iter(first))), signal.SIGKILL)
        time.sleep(1.5)
        again = _pids_answering(port)
        assert len(again) == 2
        assert again != first  # one of them is the new process
    finally:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
    survivors = [p for p in psutil.pids() if str(p) in first | again and psutil.pid_exists(p)]
    assert survivors == []


@pytest.mark.parametrize("workers", [1, 2])
def test_a_started_server_process_collects_garbage_less_often(workers: int) -> None:
    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", SERVE, str(port), str(workers)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                state = httpx.get(f"http://127.0.0.1:{port}/gc", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert tuple(state["thresholds"]) == GC_THRESHOLDS != gc.get_threshold()
        assert state["frozen"] > 1000  # the modules and the app, out of the collector's sight
    finally:
        parent.send_signal(signal.SIGTERM)
        # One process is uvicorn's own, which ends by raising the signal it caught again.
        assert parent.wait(timeout=30) in (0, -signal.SIGTERM)
