#!/usr/bin/env python3
"""Container health check of the relief image: exit status 0 when healthy, 1 when not.

Installed as `relief-healthcheck`. It finds the container's `relief` process and:
- for `relief serve <service>`, asks that API on its port (`--port`, else the service's
  `RELIEF_<SERVICE>_PORT`, else the default) for the path given, `/healthz` by default;
  `relief-healthcheck /readyz` asks whether the database and Redis are reachable too;
- for `relief worker …` and `relief relay …`, which have no HTTP port, only checks that the
  process is there.

Standard library only: it runs every few seconds and must stay cheap.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import sys
from pathlib import Path

# The API port settings and their defaults (services/<service>/settings.py).
PORTS = {
    "intake": ("RELIEF_INTAKE_PORT", 8001),
    "verification": ("RELIEF_VERIFICATION_PORT", 8002),
    "notify": ("RELIEF_NOTIFY_PORT", 8003),
}
ROLES = ("serve", "worker", "relay", "migrate")


def relief_arguments(proc: Path = Path("/proc")) -> list[str] | None:
    """The arguments after `relief` of the relief process in this container, if any."""
    for entry in sorted(proc.iterdir(), key=lambda p: p.name):
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        for index, arg in enumerate(argv):
            is_relief = arg == "relief" or arg.endswith("/relief")
            is_module = arg == "services.cli" and index > 0 and argv[index - 1] == "-m"
            rest = argv[index + 1 :]
            if (is_relief or is_module) and rest and rest[0] in ROLES:
                return rest
    return None


def api_port(arguments: list[str]) -> int:
    for index, arg in enumerate(arguments):
        if arg == "--port" and index + 1 < len(arguments):
            return int(arguments[index + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    variable, default = PORTS[arguments[1]]
    return int(os.environ.get(variable) or default)


def api_host() -> str:
    host = os.environ.get("RELIEF_HOST") or "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return "127.0.0.1"
    except ValueError:
        pass  # a host name: ask it
    return host


def check(path: str) -> bool:
    arguments = relief_arguments()
    if arguments is None:
        return False
    if arguments[0] != "serve":
        return True
    try:
        port = api_port(arguments)
    except (IndexError, KeyError, ValueError):
        return False
    connection = http.client.HTTPConnection(api_host(), port, timeout=3)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    return 0 if check(path) else 1


if __name__ == "__main__":
    sys.exit(main())
