"""Small real HTTP servers on loopback for the notification providers: WeChat (stable access
token and subscribe-message send) and an SMS gateway. Tests script their answers, failures
included, and read what was sent."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APPID = "wx0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef"
SMS_KEY = "sms-test-key"

Answer = tuple[int, dict[str, Any]]


@dataclass
class Script:
    """Answers to give, in order; when a queue is empty the default (success) is used."""

    wechat_send: deque[Answer] = field(default_factory=deque)
    sms_send: deque[Answer] = field(default_factory=deque)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    wechat_sent: list[dict[str, Any]] = field(default_factory=list)
    sms_sent: list[dict[str, Any]] = field(default_factory=list)
    token_serial: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    # How long each message send takes (a real provider's latency), and the most sends
    # seen in flight at once.
    send_seconds: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: ProviderServer

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        script = self.server.script
        if url.path in ("/cgi-bin/message/subscribe/send", "/sms/send"):
            with self.server.lock:
                script.in_flight += 1
                script.most_in_flight = max(script.most_in_flight, script.in_flight)
            time.sleep(script.send_seconds)
            with self.server.lock:
                script.in_flight -= 1
        with self.server.lock:
            if url.path == "/cgi-bin/stable_token":
                script.token_requests.append(body)
                if body.get("appid") != APPID or body.get("secret") != SECRET:
                    self._send(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
                    return
                script.token_serial += 1
                token = f"TOKEN-{script.token_serial}"
                script.valid_tokens.add(token)
                self._send(200, {"access_token": token, "expires_in": 7200})
            elif url.path == "/cgi-bin/message/subscribe/send":
                token = parse_qs(url.query).get("access_token", [""])[0]
                if token not in script.valid_tokens:
                    self._send(200, {"errcode": 40001, "errmsg": "invalid credential"})
                    return
                script.wechat_sent.append(body)
                status, answer = (
                    script.wechat_send.popleft()
                    if script.wechat_send
                    else (200, {"errcode": 0, "errmsg": "ok", "msgid": len(script.wechat_sent)})
                )
                self._send(status, answer)
            elif url.path == "/sms/send":
                if self.headers.get("X-Api-Key") != SMS_KEY:
                    self._send(401, {"code": "UNAUTHORIZED", "message": "bad key"})
                    return
                script.sms_sent.append(body)
                status, answer = (
                    script.sms_send.popleft()
                    if script.sms_send
                    else (200, {"code": "OK", "message_id": f"sms-{len(script.sms_sent)}"})
                )
                self._send(status, answer)
            else:
                self._send(404, {"errcode": 404})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


class ProviderServer(ThreadingHTTPServer):
    script: Script
    lock: threading.Lock

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def expire_tokens(self) -> None:
        with self.lock:
            self.script.valid_tokens.clear()


@contextmanager
def provider_server() -> Iterator[ProviderServer]:
    server = ProviderServer(("127.0.0.1", 0), _Handler)
    server.script = Script()
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
