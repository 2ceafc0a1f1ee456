"""`relief replay --scale S`: the platform's history through the real system.

466,200 × S applications (DOMAIN.md's count by spring 2023), spread over the 15 items in the
load test's shares and evenly over Yunnan's 129 counties, are submitted through intake's API
(`POST /applications` with an Idempotency-Key); simulated clerks (`clerks.py`) work them
through verification's API so that exactly 462,500 × S close and the rest stay in progress;
then the closure rate is read back from notify (`GET /metrics/closure`) once the pipeline has
counted everything: 99.21% at any scale where both counts are whole.

It starts its own system, as `relief bench` does: embedded PostgreSQL and Redis under
`<RELIEF_HOME>/replay` with a database `relief_replay` of its own (never the data of
`relief up`), the three APIs, their relays and workers as processes.

What differs from life, on purpose:
- Citizens' tokens are minted with `shared.auth.issue_token` (one citizen per application):
  the WeChat login needs WeChat's server. Clerks' accounts and tokens likewise (clerks.py).
- A public notice (公示) day lasts `notice_day_seconds` (1 s by default) instead of a day
  (RELIEF_NOTICE_DAY_SECONDS, refused in production): the replay cannot wait five days.
- The submission rate limits are raised (still counted), as in `relief bench`.

One JSON report per run under runs/replay/.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.bench.clerks import (
    API,
    TOKEN_TTL_SECONDS,
    Clerk,
    Desk,
    Tally,
    create_accounts,
    desks_for,
)
from services.bench.history import PlannedApplication, ReplayCounts, plan
from services.bench.lanes import Lanes, ReplayError
from services.bench.system import running
from shared.auth import Audience, Principal, Role, issue_token
from shared.settings import DEV_PLACEHOLDER, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    # loadtests/ sits beside services/ in the checkout but is not installed: the `relief`
    # script finds the load test's body generator (reused, not copied) through the root.
    sys.path.append(str(ROOT))
from loadtests.data import ITEM_SHARES, application_body, county_codes, resident_id  # noqa: E402

DATABASE = "relief_replay"


@dataclass
class ReplayReport:
    started_at: str
    scale: float
    machine: dict[str, Any]
    settings: dict[str, Any]
    planned: dict[str, Any]
    done: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # applications a second: while submitting, and over the whole replay (first submission
    # to notify having counted every decision)
    rates: dict[str, float] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # CPU seconds of each process during the replay (startup excluded), the replay's own
    # included in `seconds`
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    counties: int = 0

    @property
    def complete(self) -> bool:
        """Everything planned was done, and notify counted exactly that."""
        planned, done, notify = self.planned, self.done, self.notify
        return (
            bool(notify.get("caught_up"))
            and (done.get("submitted"), done.get("closed"))
            == (planned["submitted"], planned["closed"])
            and done.get("left_open") == planned["left_open"]
        )


class Bodies:
    """Realistic `POST /applications` bodies (loadtests/data.py), one per plan, each with an
    ID number of its own: the same person may not have two open applications for an item."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.used: set[str] = set()

    def body(self, planned: PlannedApplication) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}-{planned.index}")  # noqa: S311 (made-up data)
        body = application_body(rng, item_code=planned.item_code, region_code=planned.region_code)
        while body["applicant"]["id_number"] in self.used:
            body["applicant"]["id_number"] = resident_id(rng, planned.region_code)
        self.used.add(body["applicant"]["id_number"])
        return body


def signing_settings() -> ServiceSettings:
    """Signed as the replay's own servers (dev settings, no RELIEF_ variables) verify."""
    return ServiceSettings(env="dev", jwt_secret=SecretStr(DEV_PLACEHOLDER))


def submission_order(
    plans: list[PlannedApplication], rng: random.Random
) -> list[PlannedApplication]:
    """County by county, in a random order of counties: a county's clerks find their
    whole queue and start on it while the next counties are still being submitted, so
    intake and verification work side by side, and each desk reads its queue about once.
    (Submitted at random, every desk would complete only near the end of the submissions.)"""
    counties = sorted({p.region_code for p in plans})
    rng.shuffle(counties)
    rank = {county: n for n, county in enumerate(counties)}
    return sorted(plans, key=lambda p: rank[p.region_code])


async def _submit(
    api: Lanes,
    intake_url: str,
    plans: list[PlannedApplication],
    desks: dict[tuple[str, str], Desk],
    tally: Tally,
    concurrency: int,
    seed: int,
) -> None:
    signing = signing_settings()
    bodies = Bodies(seed)
    queue = iter(submission_order(plans, random.Random(seed)))  # noqa: S311

    async def citizen() -> None:
        for planned in queue:  # shared by the submitters: each plan is taken once
            token = issue_token(
                signing,
                Principal(subject=f"replay-citizen-{planned.index}", role=Role.CITIZEN),
                audience=Audience.CITIZEN,
                ttl_seconds=TOKEN_TTL_SECONDS,
            )
            response = await api.call(
                "POST",
                f"{intake_url}{API}/applications",
                name="POST /applications",
                token=token,
                json=bodies.body(planned),
                headers={"Idempotency-Key": f"replay-{seed}-{planned.index}"},
            )
            if response.status_code not in (200, 201):
                raise ReplayError(
                    f"application {planned.index} ({planned.item_code}) refused: "
                    f"HTTP {response.status_code} {response.text[:300]}"
                )
            desks[planned.desk].submitted_one(str(response.json()["id"]), planned)
            tally.submitted += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(citizen())


async def _closure(api: Lanes, notify_url: str, token: str) -> dict[str, Any]:
    response = await api.call(
        "GET", f"{notify_url}{API}/metrics/closure", name="GET /metrics/closure", token=token
    )
    if response.status_code != 200:
        raise ReplayError(f"notify metrics: HTTP {response.status_code} {response.text[:300]}")
    stats: dict[str, Any] = response.json()
    return stats


async def _counted(
    api: Lanes, notify_url: str, token: str, tally: Tally, within: float, progress: Progress
) -> tuple[dict[str, Any], bool]:
    """notify's totals once they show every submission and every decision of the replay
    (the events travel relay → Redis → notify's consumer), or the last ones after `within`
    seconds."""
    bar = progress.add_task("notify has counted", total=tally.submitted + tally.closed)
    deadline = time.monotonic() + within
    while True:
        stats = await _closure(api, notify_url, token)
        progress.update(bar, completed=stats["received"] + stats["closed"]["total"])
        if stats["received"] == tally.submitted and stats["closed"]["total"] == tally.closed:
            return stats, True
        if time.monotonic() > deadline:
            return stats, False
        await asyncio.sleep(0.5)


class Bars:
    """The progress bars of the replay's work, redrawn from the tally."""

    def __init__(self, progress: Progress, tally: Tally, counts: ReplayCounts) -> None:
        self.progress, self.tally = progress, tally
        self.submitted = progress.add_task("applications submitted", total=counts.submitted)
        self.queued = progress.add_task("cases in clerks' queues", total=counts.submitted)
        self.closed = progress.add_task("cases closed (办结)", total=counts.closed)
        self.left = progress.add_task("cases left in progress", total=counts.left_open)

    def refresh(self) -> None:
        tally, update = self.tally, self.progress.update
        update(self.submitted, completed=tally.submitted)
        update(self.queued, completed=tally.cases_found)
        notice = f"cases closed (办结), {tally.waiting_for_notice} in public notice"
        update(self.closed, completed=tally.closed, description=notice)
        update(self.left, completed=tally.left_open)

    async def keep_refreshing(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(0.25)


async def _replay(
    urls: dict[str, str],
    plans: list[PlannedApplication],
    desks: dict[tuple[str, str], Desk],
    admin_token: str,
    *,
    counts: ReplayCounts,
    concurrency: int,
    seed: int,
    show_progress: bool,
    report: ReplayReport,
) -> None:
    tally = Tally()
    progress = Progress(
        TextColumn("{task.description:<44}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
    )
    routing_timeout = 120.0 + counts.submitted / 20
    api = Lanes(concurrency)
    try:
        with progress:
            bars = Bars(progress, tally, counts)
            shown = asyncio.create_task(bars.keep_refreshing())
            started, cpu = time.perf_counter(), time.process_time()
            try:
                async with asyncio.TaskGroup() as group:
                    clerks = [
                        group.create_task(
                            Clerk(api, urls["verification"], desk, tally).run(routing_timeout)
                        )
                        for desk in desks.values()
                    ]
                    await _submit(api, urls["intake"], plans, desks, tally, concurrency, seed)
                    submitted = time.perf_counter()
                    await asyncio.gather(*clerks)
                worked = time.perf_counter()
                shown.cancel()
                bars.refresh()
                stats, caught_up = await _counted(
                    api, urls["notify"], admin_token, tally, routing_timeout, progress
                )
                counted, cpu = time.perf_counter(), time.process_time() - cpu
            finally:
                shown.cancel()
    finally:
        await api.aclose()
    report.done = {
        "submitted": tally.submitted,
        "closed": tally.closed,
        "approved": tally.approved,
        "rejected": tally.rejected,
        "left_open": tally.left_open,
    }
    report.seconds.update(
        submitting=round(submitted - started, 2),
        clerks_done=round(worked - started, 2),
        notify_caught_up=round(counted - started, 2),
        # the replay's own CPU (HTTP client, bodies, tokens): what it takes from the services
        replay_cpu=round(cpu, 2),
    )
    report.rates = {
        "submitted_per_second": round(tally.submitted / max(submitted - started, 1e-9), 1),
        "replayed_per_second": round(tally.submitted / max(counted - started, 1e-9), 1),
    }
    report.notify = {
        "caught_up": caught_up,
        "received": stats["received"],
        "closed": stats["closed"]["total"],
        "approved": stats["closed"]["approved"],
        "rejected": stats["closed"]["rejected"],
        "open": stats["open"],
        "closure_rate": stats["closure_rate"],
    }
    report.requests = dict(sorted(api.requests.items()))
    report.latency_ms = api.latency_ms()
    report.retries = api.retries


def _reasons(group: BaseExceptionGroup[ReplayError]) -> list[str]:
    found: list[str] = []
    for exc in group.exceptions:
        found += _reasons(exc) if isinstance(exc, BaseExceptionGroup) else [str(exc)]
    return found


def run(
    *,
    scale: float,
    concurrency: int,
    workers: int,
    home: Path,
    out_dir: Path,
    notice_day_seconds: int = 1,
    seed: int = 2023,
    show_progress: bool = True,
) -> ReplayReport:
    began = time.perf_counter()
    counts = ReplayCounts.for_scale(scale)
    plans = plan(counts, ITEM_SHARES, county_codes(), random.Random(seed))  # noqa: S311
    desks = desks_for(plans)
    report = ReplayReport(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        scale=scale,
        machine={"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        settings={
            "concurrency": concurrency,
            "uvicorn_workers": workers,
            "notice_day_seconds": notice_day_seconds,
            "seed": seed,
            "desks": len(desks),
        },
        planned={
            "submitted": counts.submitted,
            "closed": counts.closed,
            "left_open": counts.left_open,
            "closure_rate": counts.closure_rate,
        },
        items={code: sum(1 for p in plans if p.item_code == code) for code in ITEM_SHARES},
        counties=len({p.region_code for p in plans}),
    )
    if show_progress:
        Console().print(
            f"replay of {counts.submitted:,} applications ({counts.closed:,} to close) by "
            f"{len(desks):,} clerks' desks; starting PostgreSQL, Redis and the services "
            f"under {home}…"
        )
    settings = {
        "RELIEF_NOTICE_DAY_SECONDS": str(notice_day_seconds),
        # One citizen per application, all from one address: the limits stay on (counted).
        "RELIEF_RATE_SUBMIT_PER_USER": "1000000/hour",
        "RELIEF_RATE_SUBMIT_PER_IP": "100000000/hour",
    }
    with running(home, DATABASE, workers=workers, settings=settings) as system:
        admin_token = asyncio.run(
            create_accounts(system.database_url, signing_settings(), desks.values())
        )
        report.seconds["startup"] = round(time.perf_counter() - began, 2)
        before = system.cpu_seconds()
        try:
            asyncio.run(
                _replay(
                    system.urls,
                    plans,
                    desks,
                    admin_token,
                    counts=counts,
                    concurrency=concurrency,
                    seed=seed,
                    show_progress=show_progress,
                    report=report,
                )
            )
        except* ReplayError as failed:  # from inside the task groups: say what went wrong
            raise ReplayError("; ".join(_reasons(failed))) from None
        after = system.cpu_seconds()
        report.cpu_seconds = {
            name: round(used - before.get(name, 0.0), 1) for name, used in after.items()
        }
    report.seconds["wall"] = round(time.perf_counter() - began, 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "")
    (out_dir / f"replay-{stamp}.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def render(report: ReplayReport) -> str:
    done, notify, seconds, rates = report.done, report.notify, report.seconds, report.rates
    rate = notify.get("closure_rate")
    lines = [
        f"relief replay — scale {report.scale}, {report.started_at}, "
        f"{report.machine['cpus']} CPUs, concurrency {report.settings['concurrency']}, "
        f"uvicorn workers {report.settings['uvicorn_workers']}",
        f"public notice: one day = {report.settings['notice_day_seconds']} s "
        "(RELIEF_NOTICE_DAY_SECONDS, time compressed for the replay)",
        f"applications submitted: {done['submitted']:>9,}  "
        f"(over {report.counties} counties, {len(report.items)} items)",
        f"closed:                 {done['closed']:>9,}  "
        f"(approved {done['approved']:,}, rejected {done['rejected']:,})",
        f"left open:              {done['left_open']:>9,}",
        f"wall time: {seconds['wall']:.1f} s = startup {seconds['startup']:.1f} s + replay "
        f"{seconds['notify_caught_up']:.1f} s (all submitted at {seconds['submitting']:.1f} s, "
        f"clerks done at {seconds['clerks_done']:.1f} s, notify caught up at "
        f"{seconds['notify_caught_up']:.1f} s)",
        f"rate: {rates['submitted_per_second']:.1f} applications/s submitted, "
        f"{rates['replayed_per_second']:.1f} applications/s replayed end to end",
        f"notify: received {notify['received']:,}, closed {notify['closed']:,}, "
        f"open {notify['open']:,}, closure rate {rate if rate is None else f'{rate:.2f}%'}"
        + ("" if notify["caught_up"] else "  (NOT caught up: timed out waiting)"),
        f"requests: {sum(report.requests.values()):,} ({report.retries:,} retried), "
        f"the replay's own CPU {seconds['replay_cpu']:.1f} s",
        "CPU seconds: "
        + ", ".join(f"{name} {cpu:.1f}" for name, cpu in report.cpu_seconds.items()),
    ]
    return "\n".join(lines)
