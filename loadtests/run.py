"""`make loadtest`: start the platform (unless one is given), run locust with a shape, report.

    python -m loadtests.run --shape daily|sweep|spike [--speed 100] [--headless 1|0]
                            [--duration S] [--start-hour H] [--processes N] [--out DIR]

- LOADTEST_HOST set: test that platform (intake URL; verification and notify on its host,
  ports 8002/8003, or LOADTEST_VERIFICATION_HOST / LOADTEST_NOTIFY_HOST). Otherwise, if
  http://127.0.0.1:8001 answers, test that one (its per-IP limits may then answer 429s);
  otherwise start `relief up` in the background with the per-IP limits raised
  (RELIEF_RATE_LOGIN_PER_IP, RELIEF_RATE_SUBMIT_PER_IP: every simulated phone comes from
  this one address), wait for its banner, and stop it with SIGTERM at the end.
- Headless (default): locust runs the shape to its end and writes `stats_*.csv`,
  `report.html`, `locust.log`, the domain counters and `summary.json` into
  runs/loadtest/<timestamp>-<shape>/. `--headless 0`: the web UI on http://127.0.0.1:8089,
  started at once, for a person to watch; Ctrl-C ends it (reports are written then).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from loadtests.config import DEFAULT_INTAKE_URL, service_urls
from loadtests.gridworkers import grid_pool_size
from loadtests.profile import FIXED_USERS, profile_from_env

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "loadtest"
BANNER = "is up:"  # `relief up` prints "政府救助平台 is up:" once every service is ready
RAISED_LIMITS = {
    "RELIEF_RATE_LOGIN_PER_IP": "100000/minute",
    "RELIEF_RATE_SUBMIT_PER_IP": "1000000/hour",
}
VISIT_PREFIXES = (
    "/api/v1/auth/wechat",
    "/api/v1/auth/refresh",
    "/api/v1/catalog",
    "/api/v1/applications",
)
CLERK_PREFIXES = ("/api/v1/auth/login", "/api/v1/cases")
COUNTED_NOT_FAILED = re.compile(r" \[(429|409 [a-z_]+)\]$")  # names given by calls.request


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--shape",
        choices=("daily", "sweep", "spike", "pick"),
        default="daily",
        help="pick: choose in the web UI (--class-picker)",
    )
    parser.add_argument(
        "--speed", type=float, default=100.0, help="how many times a day is compressed"
    )
    parser.add_argument("--headless", type=int, choices=(0, 1), default=1)
    env = os.environ
    parser.add_argument(
        "--duration",
        type=float,
        default=float(env.get("LOADTEST_DURATION") or 0),
        help="stop after this many seconds (LOADTEST_DURATION; default: the whole shape)",
    )
    parser.add_argument(
        "--start-hour",
        type=float,
        default=float(env.get("LOADTEST_START_HOUR") or 0),
        help="hour of the day the run starts at (LOADTEST_START_HOUR; default 0)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=int(env.get("LOADTEST_PROCESSES") or 1),
        help="locust processes, for loads one CPU cannot generate (LOADTEST_PROCESSES)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder")
    parser.add_argument("--startup-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.shape == "pick" and args.headless:
        parser.error("--shape pick needs the web UI (--headless 0)")
    return args  # fmt: skip


def output_dir(shape: str, when: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return RUNS / f"{stamp}-{shape}"


def _load_shape(name: str, environ: Mapping[str, str]) -> Any:
    """The shape object, for its duration and peak, without gevent's monkey-patching in this
    process (locust patches at import unless told not to)."""
    saved = os.environ.get("LOCUST_SKIP_MONKEY_PATCH")
    os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
    try:
        from loadtests.shapes import SHAPES  # noqa: PLC0415
    finally:
        if saved is None:
            os.environ.pop("LOCUST_SKIP_MONKEY_PATCH", None)
    return SHAPES[name](environ=environ)


def locust_environment(
    args: argparse.Namespace, base: Mapping[str, str], out: Path, intake: str
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k != "LOCUST_SKIP_MONKEY_PATCH"}
    env.update(
        LOADTEST_HOST=intake,
        LOADTEST_SPEED=f"{args.speed:g}",
        LOADTEST_START_HOUR=f"{args.start_hour:g}",
        LOADTEST_DURATION=f"{args.duration:g}",
        LOADTEST_OUTPUT_DIR=str(out),
        LOADTEST_RUN_ID=env.get("LOADTEST_RUN_ID") or time.strftime("%m%d%H%M%S"),
        LOADTEST_PROCESSES=str(args.processes),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    if args.shape == "pick":
        env.pop("LOADTEST_SHAPE", None)
    else:
        env["LOADTEST_SHAPE"] = args.shape
        if "LOADTEST_GRID_WORKERS" not in env:
            shape = _load_shape(args.shape, env)
            env["LOADTEST_GRID_WORKERS"] = str(grid_pool_size(profile_from_env(env), shape))
    return env


def locust_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = [
        sys.executable, "-m", "locust",
        "-f", str(ROOT / "loadtests" / "locustfile.py"),
        "--csv", str(out / "stats"),
        "--html", str(out / "report.html"),
        "--logfile", str(out / "locust.log"),
        "--loglevel", "INFO",
        "--exit-code-on-error", "1",
    ]  # fmt: skip
    if args.processes != 1:
        command += ["--processes", str(args.processes)]
    if args.headless:
        command += ["--headless", "--only-summary"]
    elif args.shape == "pick":
        command += ["--class-picker"]
    else:
        command += ["--autostart"]
    return command


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Platform:
    process: subprocess.Popen[str] | None
    log_path: Path | None

    def stop(self, timeout: float = 90) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        print("stopping relief up (SIGTERM)…", flush=True)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _copy_output(stream: IO[str], sink: IO[str], seen: threading.Event) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()
        if BANNER in line:
            seen.set()


def start_platform(out: Path, environ: Mapping[str, str], timeout: float) -> Platform:
    """`relief up` in the background, its output in <out>/relief.log, ready at its banner."""
    env = dict(environ)
    for name, value in RAISED_LIMITS.items():
        env.setdefault(name, value)
    log_path = out / "relief.log"
    sink = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
    )
    assert process.stdout is not None
    seen = threading.Event()
    threading.Thread(target=_copy_output, args=(process.stdout, sink, seen), daemon=True).start()
    deadline = time.monotonic() + timeout
    try:
        while not seen.wait(0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                raise SystemExit(f"relief up did not come up (see {log_path}):\n{tail}")
    except BaseException:
        Platform(process, log_path).stop()
        raise
    print(f"relief up is running (limits: {', '.join(f'{k}={env[k]}' for k in RAISED_LIMITS)})")
    return Platform(process, log_path)


@contextlib.contextmanager
def platform(out: Path, environ: Mapping[str, str], timeout: float) -> Iterator[str]:
    """The intake URL of the platform under test; started here (and stopped) if needed."""
    given = environ.get("LOADTEST_HOST")
    if given:
        urls = service_urls(environ)
        down = [u for u in urls if not healthy(u)]
        if down:
            raise SystemExit(f"LOADTEST_HOST is set but these do not answer /healthz: {down}")
        yield urls[0]
        return
    if healthy(DEFAULT_INTAKE_URL):
        print(
            f"a platform already answers on {DEFAULT_INTAKE_URL}: testing it. Its per-IP limits "
            "are its own; unless it was started with "
            + " ".join(f"{k}={v}" for k, v in RAISED_LIMITS.items())
            + ", expect 429s (counted, not failures).",
            flush=True,
        )
        yield DEFAULT_INTAKE_URL
        return
    started = start_platform(out, environ, timeout)
    try:
        yield DEFAULT_INTAKE_URL
    finally:
        started.stop()


def classify(name: str) -> str:
    if name.startswith(VISIT_PREFIXES):
        return "visits"
    if name.startswith(CLERK_PREFIXES):
        return "clerks"
    return "ops"


def summarize(out: Path, target_visits_rps: float | None = None) -> dict[str, Any]:
    """Figures of a finished run from locust's CSVs and the counters files."""
    stats_path = out / "stats_stats.csv"
    rows = list(csv.DictReader(stats_path.open(encoding="utf-8"))) if stats_path.exists() else []
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    per_name = [r for r in rows if r["Name"] != "Aggregated"]
    requests = int(total["Request Count"]) if total else 0
    rps = float(total["Requests/s"]) if total else 0.0
    groups: dict[str, int] = {"visits": 0, "clerks": 0, "ops": 0}
    for row in per_name:
        groups[classify(row["Name"])] += int(row["Request Count"])
    failures = {
        f"{r['Type']} {r['Name']}": int(r["Failure Count"])
        for r in per_name
        if int(r["Failure Count"])
    }
    accepted = {
        f"{r['Type']} {r['Name']}": int(r["Request Count"])
        for r in per_name
        if COUNTED_NOT_FAILED.search(r["Name"])
    }
    counters: dict[str, int] = {}
    for path in sorted(out.glob("counters-*.json")):
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            counters[key] = counters.get(key, 0) + int(value)
    applications = sum(v for k, v in counters.items() if k.startswith("applications:"))
    seconds = requests / rps if rps else 0.0
    summary: dict[str, Any] = {
        "requests": requests,
        "requests_per_second": round(rps, 2),
        "seconds": round(seconds, 1),
        "visits": groups["visits"],
        "visits_per_second": round(groups["visits"] / seconds, 2) if seconds else 0.0,
        "clerk_requests": groups["clerks"],
        "ops_requests": groups["ops"],
        "failures": sum(failures.values()),
        "failures_by_request": failures,
        "counted_not_failed": accepted,
        "applications": applications,
        "visits_per_application": round(groups["visits"] / applications, 1)
        if applications
        else None,
        "counters": counters,
        "p95_ms": float(total["95%"]) if total and total.get("95%") not in (None, "N/A") else None,
    }
    if target_visits_rps is not None:
        summary["target_visits_per_second"] = round(target_visits_rps, 2)
    weighted = weighted_user_seconds(out / "stats_stats_history.csv")
    if weighted:
        # The measured side of users = visits per second / a user's visit rate.
        summary["measured_visits_per_user_second"] = round(groups["visits"] / weighted, 4)
        summary["model_visits_per_user_second"] = round(
            profile_from_env().visits_per_weighted_user, 4
        )
    return summary  # fmt: skip


def weighted_user_seconds(history: Path) -> float:
    """The integral of the weighted users (the fixed ops users left out) over the run."""
    if not history.exists():
        return 0.0
    with history.open(encoding="utf-8") as handle:
        points = [
            (int(row["Timestamp"]), max(0, int(row["User Count"]) - FIXED_USERS))
            for row in csv.DictReader(handle)
            if row["Name"] == "Aggregated"
        ]
    return float(
        sum(users * (later[0] - now) for (now, users), later in itertools.pairwise(points))
    )


def target_visits(shape_name: str, environ: Mapping[str, str]) -> float | None:
    """The shape's average target visit rate over its run."""
    if shape_name == "pick":
        return None
    shape = _load_shape(shape_name, environ)
    steps = max(1, int(shape.duration))
    times = [shape.duration * i / steps for i in range(steps)]
    return float(sum(shape.visits_rps_at(t) for t in times) / len(times))


def finish_locust(locust: subprocess.Popen[bytes]) -> int:
    """After a Ctrl-C: a terminal sent it to locust too, and locust writes its reports and
    exits; if it did not get it (run.py alone was interrupted), pass it on. Locust writes
    the HTML report on SIGINT, not on SIGTERM."""
    try:
        return locust.wait(timeout=10)
    except subprocess.TimeoutExpired:
        locust.send_signal(signal.SIGINT)
    try:
        return locust.wait(timeout=120)
    except subprocess.TimeoutExpired:
        locust.terminate()
        return locust.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = (args.out or output_dir(args.shape)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    code = 1
    with platform(out, os.environ, args.startup_timeout) as intake:
        env = locust_environment(args, os.environ, out, intake)
        command = locust_command(args, out)
        if not args.headless:
            print("locust web UI: http://127.0.0.1:8089 (Ctrl-C to finish)", flush=True)
        print(f"reports: {out}", flush=True)
        (out / "command.txt").write_text(" ".join(command) + "\n")
        locust = subprocess.Popen(command, cwd=ROOT, env=env)
        try:
            code = locust.wait()
        except KeyboardInterrupt:
            code = finish_locust(locust)
    summary = summarize(out, target_visits(args.shape, env))
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
