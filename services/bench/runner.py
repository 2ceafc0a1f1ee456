"""`relief bench`: intake's submission throughput and latency, submission-to-queue latency,
and a minimal baseline on the same server settings, loaded the same way by wrk (a C load
generator that leaves the CPU to the server). One JSON report per run under runs/bench/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from services.bench.baseline import SCHEMA_SQL
from services.bench.lua import baseline_script, intake_script
from services.bench.system import BenchError, process, running, service_env, wait_ready
from shared.auth import Audience, Principal, Role, issue_token
from shared.db import plain_url
from shared.embedded import free_port
from shared.forms import sample_form
from shared.settings import DEV_PLACEHOLDER, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "relief_bench"
CITIZENS = 500  # tokens spread over many users, as real traffic is


@dataclass
class WrkResult:
    connections: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    # Answered 2xx per second: past capacity wrk's req/s also counts the quick 503s.
    ok_per_second: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds and not self.ok_per_second:
            self.ok_per_second = round((self.requests - self.non_2xx) / self.seconds, 1)


@dataclass
class BenchReport:
    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    baseline: list[WrkResult] = field(default_factory=list)
    intake: list[WrkResult] = field(default_factory=list)
    submission_to_queue_ms: dict[str, float] = field(default_factory=dict)
    # The same, for the applications submitted at each connection count.
    submission_to_queue_ms_by_connections: dict[str, dict[str, float]] = field(default_factory=dict)
    ratio_to_baseline: dict[str, float] = field(default_factory=dict)
    # CPU seconds each process (with its children) used over the intake runs and until
    # every application reached its department: where the machine's time went.
    cpu_seconds: dict[str, float] = field(default_factory=dict)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str, connections: int, seconds: float) -> WrkResult:
    def find(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, output)
        return match.group(1) if match else default

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        connections=connections,
        seconds=seconds,
        requests_per_second=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"\s50%\s+([\d.]+\w+)", "0ms")),
        p90_ms=_ms(find(r"\s90%\s+([\d.]+\w+)", "0ms")),
        p99_ms=_ms(find(r"\s99%\s+([\d.]+\w+)", "0ms")),
        requests=int(find(r"(\d+) requests in")),
        non_2xx=int(find(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install wrk")
    return wrk


def run_wrk(url: str, script: str, connections: int, seconds: float) -> WrkResult:
    wrk = find_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        output = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--latency",
                "--timeout",
                "10s",
                "-s",
                fh.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(fh.name)
    return parse_wrk(output, connections, seconds)


async def prepare_baseline_schema(url: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        for statement in SCHEMA_SQL:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _queue_latency(
    url: str, window: tuple[datetime, datetime] | None = None
) -> dict[str, float]:
    """Milliseconds from submission until the case was in the clerk's queue, over the
    applications submitted in `window` (all of them without one)."""
    since, until = window or (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    conn = await asyncpg.connect(plain_url(url))
    try:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
                   max(ms) AS max
            FROM (SELECT extract(epoch FROM c.created_at - a.created_at) * 1000 AS ms
                  FROM verification.cases c JOIN intake.applications a ON a.id = c.application_id
                  WHERE a.created_at >= $1 AND a.created_at < $2) t
            """,
            since,
            until,
        )
    finally:
        await conn.close()
    return {k: round(float(row[k] or 0), 1) for k in ("n", "p50", "p95", "p99", "max")}


async def _wait_routed(url: str, within: float = 120) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM intake.applications WHERE routed_at IS NULL"
            )
            if waiting == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def citizen_tokens(count: int) -> list[str]:
    """Tokens of `count` citizens, signed as the bench's own servers (dev settings, no
    RELIEF_ variables) verify."""
    settings = ServiceSettings(env="dev", jwt_secret=SecretStr(DEV_PLACEHOLDER))
    return [
        issue_token(
            settings,
            Principal(subject=f"bench-citizen-{n}", role=Role.CITIZEN),
            audience=Audience.CITIZEN,
            ttl_seconds=3600,
        )
        for n in range(count)
    ]


def run(
    *,
    connections: list[int],
    seconds: float,
    workers: int,
    home: Path,
    out_dir: Path,
) -> BenchReport:
    find_wrk()  # before the platform is started for nothing
    settings = ServiceSettings(env="dev", jwt_secret=SecretStr(DEV_PLACEHOLDER))
    report = BenchReport(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        settings={
            "uvicorn_workers": workers,
            "db_pool_size": settings.db_pool_size,
            "db_max_overflow": settings.db_max_overflow,
            "max_inflight_requests": settings.max_inflight_requests,
            "seconds": seconds,
        },
    )
    # The bench measures the work, not the abuse limits (which stay on: counted).
    limits = {
        "RELIEF_RATE_SUBMIT_PER_USER": "1000000/hour",
        "RELIEF_RATE_SUBMIT_PER_IP": "100000000/hour",
    }
    with running(home, DATABASE, workers=workers, settings=limits) as platform:
        asyncio.run(prepare_baseline_schema(platform.database_url))
        env = service_env(home, platform.database_url, platform.redis_url, {})
        # The platform's processes idle meanwhile (a fraction of a percent of a CPU).
        port = free_port()
        baseline = [sys.executable, "-m", "services.bench.baseline", str(port), str(workers)]
        with process(baseline, env, home / "logs" / "baseline.log"):
            wait_ready(f"http://127.0.0.1:{port}/baseline")
            for c in connections:
                report.baseline.append(
                    run_wrk(f"http://127.0.0.1:{port}/baseline", baseline_script(), c, seconds)
                )

        tokens = citizen_tokens(CITIZENS)
        form = sample_form("medical_assistance")
        before = platform.cpu_seconds()
        windows = {}
        for level, c in enumerate(connections):
            script = intake_script(tokens, form, first=level * 1_000_000)
            started = datetime.now(UTC)
            report.intake.append(
                run_wrk(f"{platform.urls['intake']}/api/v1/applications", script, c, seconds)
            )
            windows[str(c)] = (started, datetime.now(UTC))
        asyncio.run(_wait_routed(platform.database_url))
        after = platform.cpu_seconds()
        report.cpu_seconds = {
            name: round(after[name] - before.get(name, 0.0), 1) for name in sorted(after)
        }
        report.submission_to_queue_ms = asyncio.run(_queue_latency(platform.database_url))
        for level_key, window in windows.items():
            report.submission_to_queue_ms_by_connections[level_key] = asyncio.run(
                _queue_latency(platform.database_url, window)
            )
    for base, ours in zip(report.baseline, report.intake, strict=True):
        if base.ok_per_second:
            report.ratio_to_baseline[str(ours.connections)] = round(
                ours.ok_per_second / base.ok_per_second, 2
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def render(report: BenchReport) -> str:
    lines = [
        f"relief bench — {report.started_at}, {report.machine['cpus']} CPUs, "
        f"uvicorn workers {report.settings['uvicorn_workers']}"
    ]
    lines.append(
        f"{'':10} {'conns':>5} {'req/s':>9} {'2xx/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'non-2xx':>8} {'errors':>7}"
    )
    for label, results in (("baseline", report.baseline), ("intake", report.intake)):
        for r in results:
            lines.append(
                f"{label:10} {r.connections:>5} {r.requests_per_second:>9.0f} "
                f"{r.ok_per_second:>9.0f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} {r.p99_ms:>8.1f} "
                f"{r.non_2xx:>8} {r.socket_errors:>7}"
            )
    lines.append(
        "intake / baseline (2xx per second): "
        + ", ".join(f"{c} conns {ratio:.2f}x" for c, ratio in report.ratio_to_baseline.items())
    )
    if report.cpu_seconds:
        lines.append(
            "CPU seconds over the intake runs: "
            + ", ".join(f"{name} {value}" for name, value in report.cpu_seconds.items())
        )
    for label, q in [
        ("all", report.submission_to_queue_ms),
        *((f"{c} conns", v) for c, v in report.submission_to_queue_ms_by_connections.items()),
    ]:
        lines.append(
            f"submission to clerk queue, {label} ({q.get('n', 0):.0f} applications): "
            f"p50 {q.get('p50', 0)} ms, p95 {q.get('p95', 0)} ms, p99 {q.get('p99', 0)} ms"
        )
    return "\n".join(lines)
