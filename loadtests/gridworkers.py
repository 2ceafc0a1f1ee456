"""Grid workers (网格员) for the load test: who they are, registering them, sharing them out.

A WeChat login carries the grid_worker role only for an openid registered with
`relief grid-workers add` (a command with database access, no HTTP endpoint). The locustfile's
`test_start` hook registers this run's pool by running that command, in one subprocess for the
whole pool (`python -m loadtests.gridworkers add`, which calls the `relief` command line once
per worker, without paying Python's start-up for each), and deactivates the pool at the end.

Each openid may submit 10 applications an hour (RELIEF_RATE_SUBMIT_PER_USER). A compressed
day makes an hour of reports happen in seconds, so the run needs many grid workers, each
reporting now and then; `IdentityPool` hands out the one with the most submissions left and
keeps each under 9 an hour.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtests.data import CLERK_COUNTY, choose_county, person_name
from loadtests.profile import TrafficProfile

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS_PER_HOUR = 9  # under the platform's 10/hour, leaving one for a retry
MAX_POOL = 600


@dataclass(frozen=True, slots=True)
class GridWorker:
    openid: str
    name: str
    region: str


def pool(run_id: str, size: int, clerk_county_share: float) -> list[GridWorker]:
    """This run's grid workers: the same list in every locust process of the run. The first
    is always in the demo clerks' county, so its reports reach a clerk."""
    rng = random.Random(f"grid-{run_id}")
    workers = []
    for index in range(size):
        region = CLERK_COUNTY if index == 0 else choose_county(rng, clerk_county_share)
        workers.append(GridWorker(f"lt-{run_id}-g{index:04d}", f"网格员{person_name(rng)}", region))
    return workers


def pool_size(
    peak_submissions_per_second: float, duration_seconds: float, peak_grid_users: int
) -> int:
    """Enough grid workers that none needs more than SUBMISSIONS_PER_HOUR in any hour, and
    twice as many as grid-worker users at the peak (each holds one during a journey)."""
    window = min(duration_seconds, 3600.0)
    by_rate = math.ceil(peak_submissions_per_second * window / SUBMISSIONS_PER_HOUR * 1.2)
    return max(4, min(MAX_POOL, max(by_rate, 2 * peak_grid_users)))


def grid_pool_size(profile: TrafficProfile, shape: Any) -> int:
    """The pool for a shape (anything with peak_visits_rps(), duration and peak_users)."""
    peak_visits = float(shape.peak_visits_rps())
    return pool_size(
        profile.grid_submissions_per_second(peak_visits),
        float(shape.duration),
        profile.grid_users_for(int(shape.peak_users)),
    )


def _run(command: str, workers: list[GridWorker], timeout: float) -> int:
    entries = [asdict(w) for w in workers] if command == "add" else [w.openid for w in workers]
    payload = json.dumps(entries, ensure_ascii=False)
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.gridworkers", command],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    try:
        return int(json.loads(lines[-1])["done"]) if lines else 0
    except (ValueError, KeyError, TypeError):
        sys.stderr.write(result.stderr[-2000:])
        return 0


def register(workers: list[GridWorker], timeout: float = 600) -> int:
    """Register the workers through `relief grid-workers add`; how many went through."""
    return _run("add", workers, timeout)


def deactivate(workers: list[GridWorker], timeout: float = 600) -> int:
    return _run("remove", workers, timeout)


class IdentityPool:
    """Hands out registered grid workers, each within his hourly submissions."""

    def __init__(self, workers: list[GridWorker], per_hour: int = SUBMISSIONS_PER_HOUR) -> None:
        self.workers = list(workers)
        self.per_hour = per_hour
        self._submissions: dict[str, deque[float]] = {w.openid: deque() for w in workers}
        self._busy: set[str] = set()
        self.reports: dict[str, list[str]] = {w.openid: [] for w in workers}

    def _left(self, openid: str, now: float) -> int:
        times = self._submissions[openid]
        while times and times[0] <= now - 3600:
            times.popleft()
        return self.per_hour - len(times)

    def acquire(self, rng: random.Random, now: float | None = None) -> GridWorker | None:
        """A worker with submissions left — a free one if any, the most left, ties at
        random — or None. The submission is booked now; `release` undoes it if it did not
        happen."""
        moment = time.monotonic() if now is None else now
        candidates = [
            (w.openid not in self._busy, self._left(w.openid, moment), rng.random(), w)
            for w in self.workers
        ]
        candidates = [c for c in candidates if c[1] > 0]
        if not candidates:
            return None
        # A free one first; when every one is out reporting, share one (two phones).
        *_, worker = max(candidates, key=lambda c: (c[0], c[1], c[2]))
        self._busy.add(worker.openid)
        self._submissions[worker.openid].append(moment)
        return worker

    def release(self, worker: GridWorker, *, booked: bool, submitted: bool) -> None:
        """The journey with `worker` is over; a booked submission that did not happen is
        given back."""
        self._busy.discard(worker.openid)
        if booked and not submitted and self._submissions[worker.openid]:
            self._submissions[worker.openid].pop()

    def any_worker(self, rng: random.Random) -> GridWorker | None:
        """Someone to look at earlier reports when nobody may submit."""
        free = [w for w in self.workers if w.openid not in self._busy]
        if not free:
            return None
        worker = rng.choice(free)
        self._busy.add(worker.openid)
        return worker


def _cli(arguments: list[str]) -> bool:
    # Only in the registration subprocess: the CLI imports the services it administers.
    from services.cli import app  # noqa: PLC0415

    try:
        code = app(arguments, standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # a refusal is reported and the others still go through
        sys.stderr.write(f"relief {' '.join(arguments[:2])} failed: {exc!r}\n")
        return False
    return code in (0, None)


def main(argv: list[str]) -> int:
    """`python -m loadtests.gridworkers add|remove` with the workers as JSON on stdin."""
    command = argv[0] if argv else ""
    entries = json.loads(sys.stdin.read() or "[]")
    done = 0
    for entry in entries:
        if command == "add":
            arguments = ["grid-workers", "add", "--openid", entry["openid"],
                         "--name", entry["name"], "--region", entry["region"]]  # fmt: skip
        elif command == "remove":
            arguments = ["grid-workers", "remove", "--openid", str(entry)]
        else:
            sys.stderr.write("usage: python -m loadtests.gridworkers add|remove < workers.json\n")
            return 2
        done += _cli(arguments)
    print(json.dumps({"done": done}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
