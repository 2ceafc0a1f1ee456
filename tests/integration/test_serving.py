"""`relief serve --workers N`: N processes, each with its own SO_REUSEPORT socket, all
serving; a killed one comes back; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil

from shared.embedded import free_port
from tests.conftest import ROOT

SERVE = (
    "from shared.serving import serve; import sys; "
    "serve('tests.integration.pid_app:create_app', host='127.0.0.1', port=int(sys.argv[1]), "
    "workers=2, log_level='warning')"
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
    parent = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], cwd=ROOT)
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
