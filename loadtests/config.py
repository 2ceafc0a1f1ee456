"""Where the platform is and who may log in, from the environment (`run.py` sets it all).

| variable | default | meaning |
|---|---|---|
| LOADTEST_HOST | http://127.0.0.1:8001 | intake (citizens, grid workers) |
| LOADTEST_VERIFICATION_HOST | LOADTEST_HOST's host, port 8002 | verification (clerks) |
| LOADTEST_NOTIFY_HOST | LOADTEST_HOST's host, port 8003 | notify (ops) |
| RELIEF_HOME | .relief | where `relief up` keeps its data and demo-accounts.json |
| LOADTEST_CLERK_PASSWORD | demo-pass-2026 | the demo clerks' password, without that file |
| LOADTEST_RUN_ID | time-based | names this run's openids, so runs never share rate limits |
| LOADTEST_OUTPUT_DIR | none | where the run's counters are written |
| LOADTEST_GRID_WORKERS | sized from the shape, at most 600 | grid workers registered |
| LOADTEST_INFO_TIMEOUT | 180 | seconds a clerk waits for a citizen's answer before refusing |
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.catalog import catalog

DEFAULT_INTAKE_URL = "http://127.0.0.1:8001"
DEMO_PASSWORD = "demo-pass-2026"


@dataclass(frozen=True)
class LoadtestConfig:
    intake_url: str
    verification_url: str
    notify_url: str
    relief_home: Path
    clerk_accounts: dict[str, tuple[str, str]]  # department -> (username, password)
    run_id: str
    output_dir: Path | None
    grid_workers: int | None
    info_timeout: float


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{port}", "", "", ""))


def service_urls(environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(intake, verification, notify) base URLs. Verification and notify default to the
    intake host on ports 8002 and 8003, as `relief up` serves them."""
    intake = (environ.get("LOADTEST_HOST") or DEFAULT_INTAKE_URL).rstrip("/")
    verification = environ.get("LOADTEST_VERIFICATION_HOST") or _with_port(intake, 8002)
    notify = environ.get("LOADTEST_NOTIFY_HOST") or _with_port(intake, 8003)
    return intake, verification.rstrip("/"), notify.rstrip("/")


def clerk_accounts(relief_home: Path, password: str = DEMO_PASSWORD) -> dict[str, tuple[str, str]]:
    """The demo clerk of each department: from `<RELIEF_HOME>/demo-accounts.json`, written by
    `relief up`, or `<dept>-clerk` with the demo password when the file is not there."""
    accounts = {d.code: (f"{d.code}-clerk", password) for d in catalog().departments}
    path = relief_home / "demo-accounts.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return accounts
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("role") == "clerk" and entry.get("department"):
            accounts[str(entry["department"])] = (
                str(entry["username"]),
                str(entry.get("password") or password),
            )
    return accounts


def config_from_env(environ: Mapping[str, str] | None = None) -> LoadtestConfig:
    env = os.environ if environ is None else environ
    intake, verification, notify = service_urls(env)
    home = Path(env.get("RELIEF_HOME") or ".relief")
    output = env.get("LOADTEST_OUTPUT_DIR")
    grid = env.get("LOADTEST_GRID_WORKERS")
    return LoadtestConfig(
        intake_url=intake,
        verification_url=verification,
        notify_url=notify,
        relief_home=home,
        clerk_accounts=clerk_accounts(home, env.get("LOADTEST_CLERK_PASSWORD") or DEMO_PASSWORD),
        run_id=env.get("LOADTEST_RUN_ID") or time.strftime("%m%d%H%M%S"),
        output_dir=Path(output) if output else None,
        grid_workers=int(grid) if grid else None,
        info_timeout=float(env.get("LOADTEST_INFO_TIMEOUT") or 180),
    )
