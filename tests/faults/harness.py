"""A whole platform of real processes for fault tests: embedded PostgreSQL and Redis in a
folder of its own (so a test may stop them or wipe Redis), the three APIs, their workers
and relays; a load of citizens and clerks; and the reconciliation that proves nothing was
lost or done twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.verification.accounts.service import create_user
from services.verification.settings import VerificationSettings
from shared import migrations
from shared.auth import Role
from shared.db import create_engine, create_sessionmaker, plain_url, unit_of_work
from shared.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.conftest import ROOT
from tests.factories import application_body, resident_id

PASSWORD = "fault-password-1"
SERVICES = ("intake", "verification", "notify")
CLERKS = {"medins": "fault-medins", "hrss": "fault-hrss"}
ITEMS = ("medical_assistance", "employment_assistance")  # reject early / approve after check
FIELD_CHECK = {"visited_on": "2026-11-01", "findings": "属实", "household_confirmed": True}


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def signal(self, sig: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 20) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Platform:
    home: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str
    redis_url: str
    ports: dict[str, int]
    processes: dict[str, Process] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
        env.update(
            {
                "RELIEF_ENV": "test",
                "RELIEF_HOME": str(self.home),
                "RELIEF_DATABASE_URL": self.database_url,
                "RELIEF_REDIS_URL": self.redis_url,
                "RELIEF_LOG_JSON": "true",
                "RELIEF_INTAKE_PORT": str(self.ports["intake"]),
                "RELIEF_VERIFICATION_PORT": str(self.ports["verification"]),
                "RELIEF_NOTIFY_PORT": str(self.ports["notify"]),
                # Faults are found and healed in seconds, not minutes.
                "RELIEF_CONSUMER_CLAIM_IDLE_MS": "2000",
                "RELIEF_ROUTE_ACK_TIMEOUT_SECONDS": "6",
                "RELIEF_DB_POOL_TIMEOUT_SECONDS": "2",
                "RELIEF_RATE_LOGIN_PER_IP": "100000/minute",
                "RELIEF_RATE_LOGIN_PER_USER": "100000/minute",
                "RELIEF_RATE_SUBMIT_PER_USER": "100000/hour",
                "RELIEF_RATE_SUBMIT_PER_IP": "100000/hour",
                "RELIEF_SENDER_INTERVAL_SECONDS": "0.5",
            }
        )
        env.update(extra)
        return env

    def add(self, name: str, *command: str, **env: str) -> Process:
        process = Process(
            name,
            [sys.executable, "-m", "services.cli", *command],
            self.env(**env),
            self.home / f"{name}.log",
        )
        self.processes[name] = process
        process.start()
        return process

    def start_services(self) -> None:
        for service in SERVICES:
            self.add(f"{service}-api", "serve", service)
        self.add("intake-worker", "worker", "intake")
        self.add("verification-worker-1", "worker", "verification", RELIEF_WORKER_ID="1")
        self.add("verification-worker-2", "worker", "verification", RELIEF_WORKER_ID="2")
        self.add("notify-worker", "worker", "notify")
        self.add("intake-relay", "relay", "intake")
        self.add("verification-relay", "relay", "verification")
        deadline = time.monotonic() + 60
        for service in SERVICES:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url(service)}/readyz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service} not ready:\n{self.logs()[-3000:]}")
                time.sleep(0.2)

    def restart(self, name: str) -> None:
        process = self.processes[name]
        process.stop()
        process.start()

    def logs(self) -> str:
        return "\n".join(
            p.log.read_text(errors="replace") for p in self.processes.values() if p.log.exists()
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@contextlib.asynccontextmanager
async def platform(home: Path) -> AsyncIterator[Platform]:
    postgres = EmbeddedPostgres(home, preferred_port=None, durable=False)
    redis = EmbeddedRedis(home, preferred_port=None, durable=True)
    postgres.start()
    redis.start()
    system: Platform | None = None
    try:
        postgres.ensure_database("relief")
        database_url = postgres.url("relief")
        for service in SERVICES:
            await asyncio.to_thread(migrations.upgrade, service, database_url)
        system = Platform(
            home,
            postgres,
            redis,
            database_url,
            redis.url(),
            {s: free_port() for s in SERVICES},
        )
        await _create_clerks(database_url)
        await asyncio.to_thread(system.start_services)
        yield system
    finally:
        if system is not None:
            system.stop()
        redis.stop()
        postgres.stop()


async def _create_clerks(database_url: str) -> None:
    engine = create_engine(
        VerificationSettings.model_validate({"RELIEF_DATABASE_URL": database_url}),
        application_name="fault-setup",
    )
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            for department, username in CLERKS.items():
                await create_user(
                    session,
                    username=username,
                    password=PASSWORD,
                    role=Role.CLERK,
                    department=department,
                    region_code="530129",
                )
    finally:
        await engine.dispose()


@dataclass
class LoadFigures:
    started: float = field(default_factory=time.monotonic)
    load_seconds: float = 0.0
    submitted: int = 0
    decided: int = 0
    retried_requests: int = 0
    answers: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    identities: list[tuple[str, str]] = field(default_factory=list)  # (id number, phone)

    def saw(self, status: int) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1


async def _call(
    client: httpx.AsyncClient, figures: LoadFigures, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """A mini-program on a weak network: retry what failed for want of the server, with the
    same request (and Idempotency-Key), for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError:
            status = 0
        else:
            status = response.status_code
            figures.saw(status)
            if status not in (502, 503, 504):
                return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing ({status})")
        figures.retried_requests += 1
        await asyncio.sleep(0.3)


async def run_load(system: Platform, *, seconds: float, rate_per_second: float = 6) -> LoadFigures:
    """Citizens submit for `seconds`; clerks decide until every case is decided."""
    figures = LoadFigures()
    submitting = asyncio.Event()
    submitting.set()
    async with httpx.AsyncClient(timeout=10) as client:
        tokens = {}
        for department, username in CLERKS.items():
            login = await _call(
                client,
                figures,
                "POST",
                f"{system.url('verification')}/api/v1/auth/login",
                json={"username": username, "password": PASSWORD},
            )
            tokens[department] = {"Authorization": f"Bearer {login.json()['access_token']}"}

        async def citizens() -> None:
            n = 0
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                n += 1
                await submit_one(n)
                await asyncio.sleep(1 / rate_per_second)
            submitting.clear()

        async def submit_one(n: int) -> None:
            login = await _call(
                client,
                figures,
                "POST",
                f"{system.url('intake')}/api/v1/auth/wechat",
                json={"code": f"dev:fault-citizen-{n}"},
            )
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            id_number = resident_id(seq=n % 1000, birth=f"19{50 + n // 1000:02d}0101")
            phone = f"139{n:08d}"
            body = application_body(
                item_code=ITEMS[n % 2],
                applicant={"name": f"测试{n}", "id_number": id_number, "phone": phone},
            )
            response = await _call(
                client,
                figures,
                "POST",
                f"{system.url('intake')}/api/v1/applications",
                json=body,
                headers={**headers, "Idempotency-Key": f"fault-{n}-{uuid.uuid4()}"},
            )
            assert response.status_code == 201, response.text
            figures.submitted += 1
            figures.identities.append((id_number, phone))

        async def clerk(department: str) -> None:
            base = f"{system.url('verification')}/api/v1/cases"
            headers = tokens[department]
            idle_since = time.monotonic()
            while submitting.is_set() or time.monotonic() - idle_since < 25:
                page = await _call(
                    client, figures, "GET", f"{base}?status=open&limit=20", headers=headers
                )
                items = page.json()["items"]
                if items:
                    idle_since = time.monotonic()
                for case in items:
                    await work(base, headers, case["id"], case["item_code"])
                await asyncio.sleep(0.2)

        async def work(base: str, headers: dict[str, str], case_id: str, item: str) -> None:
            url = f"{base}/{case_id}"
            claimed = await _call(client, figures, "POST", f"{url}/claim", headers=headers)
            if claimed.status_code != 200:
                return
            if item == "medical_assistance":
                decision: dict[str, Any] = {"outcome": "rejected", "reason": "已享受同类救助"}
            else:
                await _call(client, figures, "POST", f"{url}/advance", headers=headers, json={})
                await _call(
                    client, figures, "POST", f"{url}/field-check", headers=headers, json=FIELD_CHECK
                )
                decision = {
                    "outcome": "approved",
                    "measures": [{"type": "employment", "description": "推荐就业"}],
                }
            decided = await _call(
                client, figures, "POST", f"{url}/decide", headers=headers, json=decision
            )
            assert decided.status_code == 200, decided.text
            figures.decided += 1

        await asyncio.gather(citizens(), clerk("medins"), clerk("hrss"))
    figures.load_seconds = round(time.monotonic() - figures.started, 1)
    return figures


@dataclass
class Reconciliation:
    applications: int
    cases: int
    duplicate_cases: int
    facts: int
    closed_in_intake: int
    decided_in_verification: int
    closed_in_notify: int
    decisions_not_seen_by_citizen: int
    accepted_notifications: int
    notification_duplicates: int

    @property
    def lost(self) -> int:
        return (
            max(0, self.applications - self.cases)
            + max(0, self.applications - self.facts)
            + self.decisions_not_seen_by_citizen
        )

    def as_dict(self) -> dict[str, int]:
        return {**self.__dict__, "lost": self.lost}


async def reconcile(system: Platform) -> Reconciliation:
    conn = await asyncpg.connect(plain_url(system.database_url))
    try:

        async def one(sql: str) -> int:
            return int(await conn.fetchval(sql))

        return Reconciliation(
            applications=await one("SELECT count(*) FROM intake.applications"),
            cases=await one("SELECT count(DISTINCT application_id) FROM verification.cases"),
            duplicate_cases=await one(
                "SELECT count(*) FROM (SELECT application_id FROM verification.cases "
                "GROUP BY application_id HAVING count(*) > 1) d"
            ),
            facts=await one("SELECT count(*) FROM notify.application_facts"),
            closed_in_intake=await one(
                "SELECT count(*) FROM intake.applications WHERE status = 'closed'"
            ),
            decided_in_verification=await one(
                "SELECT count(*) FROM verification.cases WHERE status = 'decided'"
            ),
            closed_in_notify=await one(
                "SELECT count(*) FROM notify.application_facts WHERE closed_at IS NOT NULL"
            ),
            decisions_not_seen_by_citizen=await one(
                "SELECT count(*) FROM verification.cases c JOIN intake.applications a "
                "ON a.id = c.application_id WHERE c.status = 'decided' "
                "AND (a.status <> 'closed' OR a.outcome IS DISTINCT FROM c.outcome)"
            ),
            accepted_notifications=await one(
                "SELECT count(*) FROM notify.notifications WHERE kind = 'accepted'"
            ),
            notification_duplicates=await one(
                "SELECT count(*) FROM (SELECT application_id, kind FROM notify.notifications "
                "GROUP BY application_id, kind HAVING count(*) > 1) d"
            ),
        )
    finally:
        await conn.close()


async def settle(system: Platform, figures: LoadFigures, within: float = 90) -> Reconciliation:
    """Wait until everything submitted is decided everywhere, then reconcile."""
    deadline = time.monotonic() + within
    while True:
        result = await reconcile(system)
        done = (
            result.applications == figures.submitted
            and result.cases == result.applications
            and result.facts == result.applications
            and result.closed_in_intake == result.applications
            and result.closed_in_notify == result.applications
        )
        if done or time.monotonic() > deadline:
            return result
        await asyncio.sleep(1)


def record_figures(scenario: str, figures: LoadFigures, result: Reconciliation) -> None:
    """Kept under runs/faults/ for docs/reliability.md."""
    out = ROOT / "runs" / "faults"
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "scenario": scenario,
        "submitted": figures.submitted,
        "decided_by_clerks": figures.decided,
        "load_and_decide_seconds": figures.load_seconds,
        "until_reconciled_seconds": round(time.monotonic() - figures.started, 1),
        "client_retries": figures.retried_requests,
        "answers": {str(k): v for k, v in sorted(figures.answers.items())},
        **result.as_dict(),
    }
    (out / f"{scenario}.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))


def assert_nothing_lost_or_doubled(figures: LoadFigures, result: Reconciliation) -> None:
    assert figures.submitted > 0
    assert result.applications == figures.submitted, result
    assert result.cases == result.applications, result
    assert result.duplicate_cases == 0, result
    assert result.facts == result.applications, result
    assert result.closed_in_intake == result.applications, result
    assert result.closed_in_notify == result.applications, result
    assert result.decided_in_verification == result.applications, result
    assert result.decisions_not_seen_by_citizen == 0, result
    assert result.notification_duplicates == 0, result
    assert result.lost == 0, result
    assert 500 not in figures.answers, figures.answers
