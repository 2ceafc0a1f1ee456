"""A tiny ASGI app for the serving test: answers with the process id that served it, or at
/gc with the process's garbage collector settings."""

from __future__ import annotations

import gc
import json
import os
from typing import Any


def create_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/gc":
            state = {"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}
            body = json.dumps(state).encode()
        else:
            body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app
