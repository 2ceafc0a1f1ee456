"""Schemathesis against the OpenAPI schema of each service, as every kind of caller.

For each service, role and operation: a bounded, repeatable number of generated requests
(positive and negative), many with the seeded world's identifiers and realistic bodies,
sent through the app's real middleware, auth and lifespan. The contract held (DESIGN.md):
nothing a client sends produces a 5xx; answers match the schema; every error is the JSON
envelope `{"error": {"code", "message", "details"}}` with a zh-CN message; no 2xx without
a token, nor for another citizen's application or another department's case (the checks
are in fuzzer.py).

The schema is the one the running app serves at /openapi.json (the operations are read
from `app.openapi()` at collection, to make one test per operation and role). Requests go
through httpx on the test's event loop rather than schemathesis' ASGI transport, which
would run the app on an event loop and lifespan of its own, beside the database and Redis
clients the seeding uses.

`pytest -s` prints one line per service (operations, inputs tried, statuses); the same
figures, per operation and role, go to runs/fuzz-summary.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from redis.asyncio import Redis
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from services.verification.app import create_app as create_verification
from services.verification.settings import VerificationSettings
from shared.redis import create_redis
from tests.conftest import ROOT, Infra
from tests.fuzz.fuzzer import Fuzz, Operation, only_visible, refused_without_token
from tests.fuzz.strategies import REALISTIC
from tests.fuzz.world import (
    ADMIN,
    ANONYMOUS,
    CITIZEN,
    CLERK,
    GRID_WORKER,
    SUPERVISOR,
    Seeded,
    Service,
    fuzz_intake_settings,
    running,
    seed,
)
from tests.outside import wechat

MAX_EXAMPLES = 25
# Without a token an operation that needs one turns the caller away at the door (401);
# fewer tries say as much.
MAX_EXAMPLES_TURNED_AWAY = 10
SUMMARY_PATH = ROOT / "runs" / "fuzz-summary.json"
APPS: dict[str, Callable[[str], FastAPI]] = {
    "intake": lambda wechat_url: create_intake(fuzz_intake_settings(wechat_url)),
    "verification": lambda _: create_verification(VerificationSettings(log_level="WARNING")),
    "notify": lambda _: create_notify(NotifySettings(log_level="WARNING")),
}
ROLES = {
    "intake": (ANONYMOUS, CITIZEN, GRID_WORKER),
    "verification": (ANONYMOUS, CLERK, SUPERVISOR, ADMIN),
    "notify": (ANONYMOUS, CLERK, SUPERVISOR, ADMIN),
}


def _operations(schema: BaseSchema) -> list[Operation]:
    operations = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise result.err()
        operations.append(result.ok())
    return operations


def _labels(schema: BaseSchema) -> list[str]:
    return [op.label for op in _operations(schema)]


def _public(schema: BaseSchema) -> set[str]:
    """Operations that take no Authorization header: a token changes nothing there, so
    they are fuzzed once, anonymously."""
    return {
        op.label
        for op in _operations(schema)
        if not any(p.name.lower() == "authorization" for p in op.headers)
    }


# Collected from apps built with defaults (no database needed for the schema).
_COLLECTED = {
    name: schemathesis.openapi.from_dict(app("http://127.0.0.1:9").openapi())
    for name, app in APPS.items()
}
LABELS = {name: _labels(schema) for name, schema in _COLLECTED.items()}
PUBLIC = {name: _public(schema) for name, schema in _COLLECTED.items()}


@dataclass(frozen=True)
class KnownBug:
    """A bug the fuzzer found (now fixed): `path`, `query` and `body` make the request that
    showed it, sent before the generated ones as a regression check; a path parameter
    "case:midway" names a seeded case."""

    reason: str
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] | None = None
    body: Any = None


KNOWN_BUGS: dict[tuple[str, str, str], KnownBug] = {
    ("notify", ANONYMOUS, "GET /api/v1/metrics/closure"): KnownBug(
        "500: totals (no group_by) when no application was received in the range, e.g. "
        "GET /api/v1/metrics/closure?to=0206-06-23, ?from=2030-01-01, or plain "
        "GET /api/v1/metrics/closure on an empty database -> IndexError at "
        "services/notify/metrics/router.py:36 `report.groups[0]`: closure_report drops the "
        "all-zero totals row, groups is empty",
        query={"to": "0206-06-23"},
    ),
    # The NUL character, which PostgreSQL text cannot hold (test_nul_text.py probes every
    # other text a client sends).
    ("intake", ANONYMOUS, "POST /api/v1/auth/wechat"): KnownBug(
        '500: POST /api/v1/auth/wechat {"code": "dev:有\\u0000误"} -> DBAPIError invalid byte '
        'sequence for encoding "UTF8": 0x00 (the dev openid with a NUL reaches PostgreSQL)',
        body={"code": "dev:有\x00误"},
    ),
    ("verification", SUPERVISOR, "POST /api/v1/cases/{case_id}/reveal"): KnownBug(
        '500: POST /api/v1/cases/{id}/reveal {"field": "phone", "reason": "有\\u0000误"} -> '
        'DBAPIError invalid byte sequence for encoding "UTF8": 0x00 on INSERT INTO '
        "verification.case_audit_log",
        path={"case_id": "case:midway"},
        body={"field": "phone", "reason": "有\x00误"},
    ),
}


def _params() -> list[Any]:
    params = []
    for service, roles in ROLES.items():
        for role in roles:
            for label in LABELS[service]:
                if label in PUBLIC[service] and role != ANONYMOUS:
                    continue
                params.append(pytest.param(service, role, label, id=f"{service}-{role}-{label}"))
    return params


# --- the world and the summary ----------------------------------------------------------


@dataclass
class Tally:
    """What one service's fuzzing tried, for the summary line and runs/fuzz-summary.json."""

    operations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    examples: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    seconds_seeding: float = 0.0

    def add(self, role: str, fuzz: Fuzz, seconds: float) -> None:
        label = fuzz.operation.label
        self.operations.setdefault(label, {})[role] = {
            "inputs": fuzz.tried,
            "statuses": _sorted(fuzz.statuses),
            "errors": dict(sorted(fuzz.error_codes.items())),
        }
        self.examples += fuzz.tried
        self.statuses.update(fuzz.statuses)
        if fuzz.findings:
            self.failing.append(f"{role} {label}")
        self.seconds += seconds

    @property
    def pairs(self) -> int:
        return sum(len(roles) for roles in self.operations.values())


def _sorted(statuses: Counter[int]) -> dict[str, int]:
    return {str(k): statuses[k] for k in sorted(statuses)}


@dataclass
class World:
    services: dict[str, Service]
    schemas: dict[str, BaseSchema]
    engine: AsyncEngine
    redis: Redis
    sessionmaker: async_sessionmaker[AsyncSession]
    tallies: dict[str, Tally] = field(default_factory=dict)
    seeded: Seeded | None = None
    seeded_for: str | None = None
    last_role: str | None = None

    def tally(self, service: str) -> Tally:
        return self.tallies.setdefault(service, Tally())

    async def seed(self, service: str, role: str) -> Seeded:
        """The same seeded state for each role that could change it. Seeding takes seconds
        (password hashing, the pipeline), so a role follows an anonymous caller (who can
        change nothing but lock out a spare account) without it, and notify's roles, who
        only read and replay notifications, share one."""
        changed = role != self.last_role and self.last_role not in (None, ANONYMOUS)
        if self.seeded is None or self.seeded_for != service or (changed and service != "notify"):
            started = time.monotonic()
            self.seeded = await seed(
                self.services["intake"].client,
                self.services["verification"].client,
                self.engine,
                self.redis,
                self.sessionmaker,
            )
            self.seeded_for = service
            self.tally(service).seconds_seeding += time.monotonic() - started
        self.last_role = role
        return self.seeded

    def summarize(self) -> None:
        summary = {}
        for name, t in self.tallies.items():
            summary[name] = {
                "operations": len(t.operations),
                "operation_role_pairs": t.pairs,
                "inputs_tried": t.examples,
                "statuses": _sorted(t.statuses),
                "pairs_failing": t.failing,
                "seconds_fuzzing": round(t.seconds, 1),
                "seconds_seeding": round(t.seconds_seeding, 1),
                "per_operation": t.operations,
            }
            print(
                f"\nfuzz {name}: {len(t.operations)} operations, {t.pairs} operation×role "
                f"pairs, {t.examples} inputs tried in {t.seconds:.0f}s "
                f"(+{t.seconds_seeding:.0f}s seeding); statuses {_sorted(t.statuses)}; "
                f"{len(t.failing)} pair(s) failing"
            )
        if summary:
            SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
            SUMMARY_PATH.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
async def world(
    infra: Infra, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[World]:
    redis = create_redis(infra.redis_url)
    async with AsyncExitStack() as stack:
        wechat_url = stack.enter_context(wechat.wechat_server()).base_url
        services: dict[str, Service] = {}
        schemas: dict[str, BaseSchema] = {}
        for name, app in APPS.items():
            services[name] = await stack.enter_async_context(running(name, app(wechat_url)))
            served = (await services[name].client.get("/openapi.json")).json()
            schemas[name] = schemathesis.openapi.from_dict(served)
            assert _labels(schemas[name]) == LABELS[name], "the running app serves other operations"
        world = World(services, schemas, engine, redis, sessionmaker)
        yield world
        world.summarize()
    await redis.aclose()


# --- tests ------------------------------------------------------------------------------


async def test_a_burst_of_logins_gets_429_with_retry_after(fresh: Redis) -> None:
    """With the default limits (30 logins a minute from one address), the 31st login is
    refused with 429 and Retry-After, not a 500."""
    async with running("intake", create_intake(IntakeSettings())) as intake:
        responses = [
            await intake.client.post("/api/v1/auth/wechat", json={"code": f"dev:burst-{n}"})
            for n in range(36)
        ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 30 + [429] * 6, statuses
    for limited in responses[30:]:
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize(("service", "role", "label"), _params())
async def test_operation_keeps_the_contract(
    world: World, service: str, role: str, label: str
) -> None:
    seeded = await world.seed(service, role)
    method, path = label.split(" ", 1)
    operation = world.schemas[service][path][method.lower()]
    checks = [only_visible(seeded.visible[role])] if role in seeded.visible else []
    if role == ANONYMOUS and label not in PUBLIC[service]:
        checks.append(refused_without_token)
    fuzz = Fuzz(
        operation=operation,
        service=world.services[service],
        loop=asyncio.get_running_loop(),
        auth=seeded.headers[role],
        pools=seeded.pools,
        realistic=REALISTIC.get((service, label)),
        max_examples=(
            MAX_EXAMPLES_TURNED_AWAY
            if role == ANONYMOUS and label not in PUBLIC[service]
            else MAX_EXAMPLES
        ),
        extra_checks=checks,
    )
    bug = KNOWN_BUGS.get((service, role, label))
    if bug is not None:
        named = {f"case:{state}": case for state, case in seeded.cases.items()}
        witness: dict[str, Any] = {
            "path_parameters": {name: named.get(value, value) for name, value in bug.path.items()}
        }
        if bug.query is not None:
            witness["query"] = bug.query
        if bug.body is not None:
            witness.update(body=bug.body, media_type="application/json")
        fuzz.witness = operation.Case(**witness)
    started = time.monotonic()
    await asyncio.to_thread(fuzz.run)
    world.tally(service).add(role, fuzz, time.monotonic() - started)
    assert fuzz.tried > 0
    assert not fuzz.findings, fuzz.report()
