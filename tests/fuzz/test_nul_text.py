"""The NUL character in free text: JSON carries it ("\\u0000"), PostgreSQL text cannot hold
it. The fuzzer stumbled on it twice (test_api_schemathesis.py); this probes every text a
client sends, one field at a time, each in a state where the request would otherwise be
accepted, so that the text reaches the database. A client's text must never produce a 5xx:
refused with a 4xx and the error envelope (or cleaned and accepted)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake.app import create_app as create_intake
from services.verification.app import create_app as create_verification
from services.verification.settings import VerificationSettings
from shared.redis import create_redis
from tests.conftest import Infra
from tests.factories import APPROVAL, application_body, resident_id
from tests.fuzz.world import (
    ADMIN,
    ANONYMOUS,
    CITIZEN,
    CLERK,
    SPARE_CLERK,
    SUPERVISOR,
    Seeded,
    Service,
    fuzz_intake_settings,
    running,
    seed,
)
from tests.integration.conftest import FIELD_CHECK

NUL = "有\x00误"
# What fails today: asyncpg sends the NUL and PostgreSQL refuses it, the request ends in 500.
TEXT = 'DBAPIError: invalid byte sequence for encoding "UTF8": 0x00 (a text column)'
JSONB = "DBAPIError: unsupported Unicode escape sequence (\\u0000 in a jsonb value)"
LOOKUP = 'DBAPIError: invalid byte sequence for encoding "UTF8": 0x00 (a query parameter)'


@dataclass(frozen=True)
class Probe:
    service: str
    role: str
    method: str
    path: str  # "{case:midway}", "{application:waiting}" name seeded identifiers
    body: Any = None
    bug: str | None = None  # how it failed before the fix (22021/22P05 -> 422), for the record

    @property
    def id(self) -> str:
        return f"{self.service}-{self.role}-{self.method} {self.path}-{_field(self.body)}"


def _field(body: Any, prefix: str = "") -> str:
    """Where the NUL sits in a body, for the test id: "applicant.name"."""
    if isinstance(body, dict):
        for key, value in body.items():
            found = _field(value, f"{prefix}{key}.")
            if found:
                return found
    elif isinstance(body, list):
        for value in body:
            found = _field(value, prefix)
            if found:
                return found
    elif isinstance(body, str) and "\x00" in body:
        return prefix.rstrip(".")
    return ""


def _application(**overrides: Any) -> dict[str, Any]:
    return application_body(
        item_code="temporary_assistance",
        **{"applicant": {"id_number": resident_id()}, **overrides},
    )


USER = {
    "username": "new-clerk",
    "password": "long-enough-password",
    "role": "clerk",
    "department": "medins",
    "region_code": "530129",
}
APPLICATIONS = "/api/v1/applications"
CASE = "/api/v1/cases/{case:midway}"

PROBES = [
    # intake
    Probe("intake", ANONYMOUS, "POST", "/api/v1/auth/wechat", {"code": f"dev:{NUL}"}, TEXT),
    Probe("intake", CITIZEN, "POST", APPLICATIONS, _application(description=NUL), TEXT),
    Probe(
        "intake",
        CITIZEN,
        "POST",
        APPLICATIONS,
        _application(applicant={"name": NUL, "id_number": resident_id()}),
        TEXT,
    ),
    Probe("intake", CITIZEN, "POST", APPLICATIONS, _application(household={"address": NUL}), JSONB),
    Probe(
        "intake",
        CITIZEN,
        "POST",
        APPLICATIONS + "/{application:waiting}/supplements",
        {"message": NUL},
        JSONB,
    ),
    Probe(
        "intake",
        CITIZEN,
        "POST",
        APPLICATIONS + "/{application:decided}/rating",
        {"score": 5, "comment": NUL},
        TEXT,
    ),
    Probe(
        "intake",
        CITIZEN,
        "POST",
        "/api/v1/me/bindings",
        {"name": NUL, "id_number": resident_id(), "phone": "13812345678"},
        TEXT,
    ),
    Probe(
        "intake",
        CITIZEN,
        "POST",
        APPLICATIONS + "/{application:elsewhere}/withdraw",
        {"reason": NUL},
        TEXT,
    ),
    # verification: look-ups
    Probe(
        "verification",
        ANONYMOUS,
        "POST",
        "/api/v1/auth/login",
        {"username": NUL, "password": "x"},
        LOOKUP,
    ),
    Probe("verification", CLERK, "GET", "/api/v1/cases?item_code=%E6%9C%89%00", None, LOOKUP),
    Probe("verification", ADMIN, "POST", "/api/v1/users/%E6%9C%89%00/disable", None, LOOKUP),
    Probe("verification", SUPERVISOR, "POST", CASE + "/assign", {"username": NUL}, LOOKUP),
    # verification: stored text
    Probe("verification", ADMIN, "POST", "/api/v1/users", {**USER, "username": NUL}, TEXT),
    Probe("verification", ADMIN, "POST", "/api/v1/users", {**USER, "display_name": NUL}, TEXT),
    Probe(
        "verification",
        SUPERVISOR,
        "POST",
        CASE + "/assign",
        {"username": SPARE_CLERK, "reason": NUL},
        TEXT,
    ),
    Probe("verification", CLERK, "POST", CASE + "/reveal", {"field": "phone", "reason": NUL}, TEXT),
    Probe(
        "verification", CLERK, "POST", CASE + "/field-check", {**FIELD_CHECK, "findings": NUL}, TEXT
    ),
    Probe("verification", CLERK, "POST", CASE + "/advance", {"note": NUL}, TEXT),
    Probe("verification", CLERK, "POST", CASE + "/request-info", {"message": NUL}, TEXT),
    Probe(
        "verification",
        CLERK,
        "POST",
        CASE + "/transfer",
        {"to_item_code": "subsistence_allowance", "reason": NUL},
        TEXT,
    ),
    Probe(
        "verification",
        CLERK,
        "POST",
        CASE + "/decide",
        {"outcome": "rejected", "reason": NUL},
        TEXT,
    ),
    Probe(
        "verification",
        CLERK,
        "POST",
        "/api/v1/cases/{case:last_stage}/decide",
        {**APPROVAL, "measures": [{"type": "health", "description": NUL}]},
        JSONB,
    ),
]


@dataclass
class Probed:
    services: dict[str, Service]
    seeded: Seeded


@pytest.fixture(scope="module")
async def probed(
    infra: Infra, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Probed]:
    redis = create_redis(infra.redis_url)
    async with (
        running("intake", create_intake(fuzz_intake_settings())) as intake,
        running(
            "verification", create_verification(VerificationSettings(log_level="WARNING"))
        ) as verification,
    ):
        seeded = await seed(intake.client, verification.client, engine, redis, sessionmaker)
        # Every probe is refused before it changes anything (or so it should be), so one
        # seeded state serves them all; a probe that is accepted changes it for the rest.
        yield Probed({"intake": intake, "verification": verification}, seeded)
    await redis.aclose()


def _params() -> list[Any]:
    return [
        pytest.param(
            probe,
            id=probe.id,
        )
        for probe in PROBES
    ]


@pytest.mark.parametrize("probe", _params())
async def test_a_nul_in_client_text_is_not_a_server_error(probed: Probed, probe: Probe) -> None:
    path = probe.path
    for kind, ids in (("application", probed.seeded.applications), ("case", probed.seeded.cases)):
        for state, identifier in ids.items():
            path = path.replace(f"{{{kind}:{state}}}", identifier)
    headers = {**probed.seeded.headers[probe.role], "Idempotency-Key": f"nul-{uuid.uuid4()}"}
    service = probed.services[probe.service]
    response = await service.client.request(probe.method, path, json=probe.body, headers=headers)
    assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text
