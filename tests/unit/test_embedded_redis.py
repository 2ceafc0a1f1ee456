"""A Redis that listens but is still reading its append-only file back answers LOADING to
everything: the embedded server's start waits through that, with a bound. The server here
is a few lines of RESP on loopback that answer LOADING a given number of times."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.embedded import EmbeddedError, _wait_until_loaded


def _commands(buffer: bytes) -> tuple[list[str], bytes]:
    """The names of the complete RESP commands in `buffer`, and what is left of it."""
    names = []
    while buffer.startswith(b"*"):
        lines = buffer.split(b"\r\n")
        count = int(lines[0][1:])
        if len(lines) < 1 + 2 * count + 1:
            break
        names.append(lines[2].decode().upper())
        buffer = b"\r\n".join(lines[1 + 2 * count :])
    return names, buffer


@contextmanager
def loading_redis(loading_answers: int) -> Iterator[tuple[int, list[int]]]:
    """A port whose server answers LOADING to the first `loading_answers` PINGs, then
    PONG; and the count of PINGs it answered."""
    listener = socket.create_server(("127.0.0.1", 0))
    answered = [0]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                buffer = b""
                while data := conn.recv(4096):
                    buffer += data
                    commands, buffer = _commands(buffer)
                    for command in commands:
                        conn.sendall(answer(command))

    def answer(command: str) -> bytes:
        if command == "HELLO":  # allowed while loading, as in Redis
            return b"%1\r\n+proto\r\n:3\r\n"
        if command != "PING":
            return b"+OK\r\n"
        answered[0] += 1
        if answered[0] <= loading_answers:
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        return b"+PONG\r\n"

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], answered
    finally:
        listener.close()


def test_start_waits_until_redis_has_read_its_data_back(tmp_path: Path) -> None:
    with loading_redis(loading_answers=5) as (port, answered):
        _wait_until_loaded(port, timeout=10, log_file=tmp_path / "redis.log")
    assert answered[0] == 6  # five LOADING, then the PONG it waited for


def test_a_redis_that_never_finishes_loading_is_an_error(tmp_path: Path) -> None:
    with (
        loading_redis(loading_answers=10**9) as (port, _),
        pytest.raises(EmbeddedError, match="still loading"),
    ):
        _wait_until_loaded(port, timeout=0.5, log_file=tmp_path / "redis.log")
