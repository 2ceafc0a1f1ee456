"""Running an ASGI app on several processes that each own a listening socket.

uvicorn's `--workers` shares one listening socket among its processes: the process that wakes
first accepts a whole burst of connections, and keep-alive clients (a load balancer, a load
generator, a mini-program's HTTP/1.1 pool) then stay on it while the other processes idle.
Here every process binds its own socket with SO_REUSEPORT and the kernel spreads new
connections over them. A process that dies is started again; SIGTERM or SIGINT stops all.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from shared.lifecycle import tune_gc

log = structlog.get_logger(__name__)


def serve(app: str, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the app factory `app` ("module:function") on host:port with `workers` processes;
    `options` go to uvicorn.Config as they are."""

    if workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return
    if workers <= 1:
        _serve_here(uvicorn.Config(app, factory=True, host=host, port=port, **options))
        return
    context = multiprocessing.get_context("spawn")
    stopping = False

    started: dict[int, float] = {}

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(app, host, port, options), daemon=False)
        process.start()
        started[id(process)] = time.monotonic()
        return process

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = [start() for _ in range(workers)]
    quick_deaths = 0
    try:
        while not stopping:
            for index, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                lived = time.monotonic() - started.pop(id(process), 0.0)
                quick_deaths = quick_deaths + 1 if lived < 5 else 0
                if quick_deaths >= 3 * workers:  # it cannot start (port taken, bad settings)
                    raise SystemExit(f"the server processes keep dying at start ({app})")
                log.warning("server_process_died", exitcode=process.exitcode, restarting=True)
                processes[index] = start()
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn finishes requests in flight
        for process in processes:
            process.join(timeout=float(options.get("timeout_graceful_shutdown") or 10) + 5)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(app: str, host: str, port: int, options: dict[str, Any]) -> None:

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config(app, factory=True, host=host, port=port, **options)
    _Server(config).run(sockets=[sock])


def _serve_here(config: uvicorn.Config) -> None:
    """One process: this one (as `uvicorn.run` does it)."""
    server = _Server(config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


class _Server(uvicorn.Server):
    """uvicorn's server, the garbage collector tuned once the app has started."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        tune_gc()
