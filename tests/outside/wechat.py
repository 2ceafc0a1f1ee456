"""A small real HTTP server on loopback that answers like WeChat's jscode2session, errors
included. The js_code decides the answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

APPID = "wx0123456789abcdef"
SECRET = "0123456789abcdef0123456789abcdef"

# js_code -> (HTTP status, body)
ANSWERS: dict[str, tuple[int, object]] = {
    "invalid": (200, {"errcode": 40029, "errmsg": "invalid code"}),
    "used": (200, {"errcode": 40163, "errmsg": "code been used"}),
    "limited": (200, {"errcode": 45011, "errmsg": "api minute-quota reach limit"}),
    "busy": (200, {"errcode": -1, "errmsg": "system error"}),
    "risky": (200, {"errcode": 40226, "errmsg": "user is blocked"}),
    "html": (502, "<html><body>502 Bad Gateway</body></html>"),
}


class _Handler(BaseHTTPRequestHandler):
    server: WechatServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append(query)
        if url.path != "/sns/jscode2session":
            self._send(404, {"errcode": 404, "errmsg": "not found"})
            return
        if query.get("appid") != APPID or query.get("secret") != SECRET:
            self._send(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
            return
        code = query.get("js_code", "")
        if code == "slow":
            time.sleep(3)
        if code.startswith("good-"):
            openid = code.removeprefix("good-")
            self._send(200, {"openid": openid, "session_key": f"SK-{openid}-secret"})
            return
        status, body = ANSWERS.get(code, (200, {"errcode": 40029, "errmsg": "invalid code"}))
        self._send(status, body)

    def _send(self, status: int, body: object) -> None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        # WeChat really answers JSON with a text/plain content type.
        self.send_header("Content-Type", "text/plain" if not isinstance(body, str) else "text/html")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


class WechatServer(ThreadingHTTPServer):
    requests: list[dict[str, str]]

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def wechat_server() -> Iterator[WechatServer]:
    server = WechatServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
