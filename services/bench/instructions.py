"""`relief bench --instructions`: CPU instructions per submission, counted by valgrind's
callgrind in the intake API and in the baseline, over real HTTP on the same server settings.

Throughput on these 2-core machines moves by ±10% from run to run (the other core's
neighbours, turbo, the page cache); an instruction count does not: the same code, inputs and
environment give the same count within a fraction of a percent, whatever else the machine
is doing. So a change on the hot path is judged here first, and by `relief bench` after.

Each server runs under callgrind with counting off while it starts; warm-up requests fill
its caches (the token cache sees every token of the pool, as a long wrk run does), then
counting is switched on for `requests` submissions, one at a time on one keep-alive
connection, and off again. The count covers everything the server process does for them:
HTTP parsing, the app, the drivers, the event loop, and uvicorn's 0.1 s tick (a little,
proportional to the wall time under valgrind: a few tenths of a percent here).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from stdnum.cn import ric

from services.bench.lua import baseline_body, intake_body, to_json
from services.bench.runner import DATABASE, citizen_tokens, prepare_baseline_schema
from services.bench.system import BenchError, databases, only_run, process, service_env, wait_ready
from shared.embedded import free_port
from shared.forms import sample_form

Request = tuple[dict[str, str], bytes]  # headers, body
TOKENS = 10  # the warm-up covers each, so the counted requests find them cached
STARTUP_SECONDS = 600  # importing the app under valgrind is slow


@dataclass
class InstructionReport:
    started_at: str
    requests: int
    warmup: int
    # Instructions per request, each server process's whole count over the counted requests.
    per_request: dict[str, int] = field(default_factory=dict)
    ratio_to_baseline: float = 0.0
    # callgrind's files, for callgrind_annotate or KCachegrind: where the instructions went.
    profiles: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def resident_id(n: int) -> str:
    """A valid resident ID number of Yiliang county (530129) for every n below 16,800,000:
    a distinct birth date (1950-1999, days 1-28 of each month) and sequence per n."""
    day_index, seq = n % 16800, (n // 16800) % 1000
    year, month, day = 1950 + day_index // 336, (day_index % 336) // 28 + 1, day_index % 28 + 1
    body = f"530129{year:04d}{month:02d}{day:02d}{seq:03d}"
    return body + ric.calc_check_digit(body + "0")  # it skips the last character


def _phone(n: int) -> str:
    return f"139{n % 100_000_000:08d}"  # as the wrk scripts number them


def intake_request(n: int, token: str, form: dict[str, object]) -> Request:
    """The headers and body of submission n: the wrk script's application."""
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": f"bench-{n:010d}",
    }
    return headers, to_json(intake_body(resident_id(n), _phone(n), form)).encode()


def baseline_request(n: int) -> Request:
    body = baseline_body(resident_id(n), _phone(n))
    return {"Content-Type": "application/json"}, to_json(body).encode()


def read_total(out_file: Path) -> int:
    """The instruction count callgrind wrote: its `totals:` line (its `summary:` line
    counts from the start, which the toggling leaves at 0)."""
    found = re.search(r"^totals:\s+(\d+)", out_file.read_text(), re.M)
    if not found:
        raise BenchError(f"no instruction total in {out_file}")
    return int(found.group(1))


@dataclass(frozen=True)
class Valgrind:
    valgrind: str
    control: str

    @classmethod
    def find(cls) -> Valgrind:
        valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
        if not valgrind or not control:
            raise BenchError("valgrind is not installed: apt-get install valgrind")
        return cls(valgrind, control)

    def version(self) -> str:
        found = subprocess.run([self.valgrind, "--version"], check=False, capture_output=True)
        return found.stdout.decode().strip()

    def toggle(self, pid: int, state: str) -> None:
        """Switch counting on or off in the running process `pid`."""
        subprocess.run(
            [self.control, "-i", state, str(pid)], check=True, capture_output=True, timeout=60
        )


def _callgrind(valgrind: Valgrind, out_file: Path) -> list[str]:
    return [
        valgrind.valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_file}",
    ]


@dataclass(frozen=True)
class _Server:
    name: str
    argv: list[str]  # listening on `port`
    port: int
    ready: str  # a path that answers below 500 once it listens
    path: str  # where the requests go
    make: Callable[[int], Request]  # request n


def _count(
    valgrind: Valgrind,
    server: _Server,
    env: dict[str, str],
    log: Path,
    out_file: Path,
    *,
    warmup: int,
    requests: int,
) -> int:
    """Start `server` under callgrind, send it `warmup` then `requests` requests, and
    return the count over the latter."""
    out_file.unlink(missing_ok=True)
    base = f"http://127.0.0.1:{server.port}"
    with process([*_callgrind(valgrind, out_file), *server.argv], env, log) as child:
        wait_ready(base + server.ready, STARTUP_SECONDS)
        with httpx.Client(base_url=base, timeout=120) as client:

            def send(n: int) -> None:
                headers, content = server.make(n)
                answer = client.post(server.path, headers=headers, content=content)
                if answer.status_code != 201:
                    raise BenchError(
                        f"request {n} to {server.name} answered {answer.status_code}: "
                        f"{answer.text[:300]}"
                    )

            for n in range(warmup):
                send(n)
            valgrind.toggle(child.pid, "on")
            for n in range(warmup, warmup + requests):
                send(n)
            valgrind.toggle(child.pid, "off")
    # callgrind wrote its file as the process exited, which `process` waited for; a
    # process that had to be killed wrote none.
    if not out_file.exists():
        raise BenchError(f"{server.name} did not stop in time: no count (see {log})")
    return read_total(out_file)


def run(*, requests: int, warmup: int, home: Path, out_dir: Path) -> InstructionReport:
    valgrind = Valgrind.find()
    if warmup < TOKENS:
        raise BenchError(f"--warmup must be at least {TOKENS}: one request per token")
    report = InstructionReport(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        requests=requests,
        warmup=warmup,
        machine={"python": sys.version.split()[0], "valgrind": valgrind.version()},
    )
    tokens = citizen_tokens(TOKENS)
    form = sample_form("medical_assistance")
    # The bench measures the work, not the abuse limits (which stay on: counted).
    settings = {
        "RELIEF_RATE_SUBMIT_PER_USER": "1000000/hour",
        "RELIEF_RATE_SUBMIT_PER_IP": "100000000/hour",
        "PYTHONHASHSEED": "0",  # the same hash layouts every run: the same count
    }
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "")
    report.profiles = {
        name: str(out_dir / f"instructions-{stamp}.{name}.callgrind")
        for name in ("intake", "baseline")
    }
    with only_run(home), databases(home, DATABASE) as found:
        asyncio.run(prepare_baseline_schema(found.database_url))
        env = service_env(home, found.database_url, found.redis_url, settings)
        cmd = [sys.executable, "-m"]
        intake_port, baseline_port = free_port(), free_port()
        servers = [
            _Server(
                "intake",
                [*cmd, "services.cli", "serve", "intake", "--port", str(intake_port)],
                intake_port,
                "/readyz",
                "/api/v1/applications",
                lambda n: intake_request(n, tokens[n % TOKENS], form),
            ),
            _Server(
                "baseline",
                [*cmd, "services.bench.baseline", str(baseline_port), "1"],
                baseline_port,
                "/baseline",  # 405 to a GET once it listens
                "/baseline",
                baseline_request,
            ),
        ]
        for server in servers:
            total = _count(
                valgrind,
                server,
                env,
                logs / f"{server.name}-callgrind.log",
                Path(report.profiles[server.name]),
                warmup=warmup,
                requests=requests,
            )
            report.per_request[server.name] = total // requests
    report.ratio_to_baseline = round(
        report.per_request["intake"] / report.per_request["baseline"], 2
    )
    (out_dir / f"instructions-{stamp}.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def render(report: InstructionReport) -> str:
    intake, baseline = report.per_request["intake"], report.per_request["baseline"]
    return "\n".join(
        [
            f"relief bench --instructions — {report.started_at}, {report.machine['valgrind']}, "
            f"{report.requests} requests counted after {report.warmup} warm-up",
            f"instructions per request: intake {intake:,}, baseline {baseline:,}",
            f"intake / baseline: {report.ratio_to_baseline:.2f}x the instructions "
            "(the server process's own; PostgreSQL's and Redis's are not counted)",
            *(f"profile of {server}: {path}" for server, path in report.profiles.items()),
        ]
    )
