"""Properties that must hold for every input, not just the examples someone thought of:
the resident ID check, the case procedure, and the closure counters."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError
from redis.asyncio import Redis
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from stdnum.cn import ric

from services.intake.app import create_app as create_intake
from services.notify.metrics.rollups import COUNTERS, FactState, apply_change, rebuild
from services.notify.metrics.service import percentage
from services.notify.models import ApplicationFact
from services.verification.app import create_app as create_verification
from services.verification.cases import procedure
from services.verification.settings import VerificationSettings
from shared.catalog import Item, catalog
from shared.db import unit_of_work
from shared.identity import normalize_resident_id
from shared.regions import regions
from tests.factories import APPROVAL, application_body, resident_id
from tests.fuzz.world import fuzz_intake_settings, running
from tests.integration.conftest import (
    FIELD_CHECK,
    build_pipeline,
    citizen_headers,
    end_public_notice,
    staff_headers,
)

ITEMS = catalog().items
COUNTIES = sorted(regions().counties)
CHECK_CHARACTERS = "0123456789X"


def _item(code: str) -> Item:
    item = catalog().item(code)
    assert item is not None, code
    return item


# --- (a) the resident ID validator -------------------------------------------------------


@st.composite
def id_bodies(draw: st.DrawFn) -> str:
    """17 characters: a Yunnan county, a birth date from 1900 to today, a sequence."""
    county = draw(st.sampled_from(COUNTIES))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date.today()))
    return f"{county}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"


@given(body=id_bodies(), lower=st.booleans())
def test_a_correct_check_character_is_accepted(body: str, lower: bool) -> None:
    check = ric.calc_check_digit(body + "0")
    number = body + (check.lower() if lower else check)
    assert normalize_resident_id(number) == body + check


@given(body=id_bodies(), check=st.sampled_from(CHECK_CHARACTERS))
def test_any_other_check_character_is_refused(body: str, check: str) -> None:
    assume(check != ric.calc_check_digit(body + "0"))
    with pytest.raises(PydanticCustomError) as refused:
        normalize_resident_id(body + check)
    assert refused.value.type == "id_number_checksum"


# What a citizen may type: anything, ID-shaped text, a valid number with one character
# swapped for any other.
@st.composite
def mangled_ids(draw: st.DrawFn) -> str:
    number = list(resident_id(draw(st.sampled_from(COUNTIES)), seq=draw(st.integers(0, 999))))
    position = draw(st.integers(0, len(number) - 1))
    number[position] = draw(st.characters())
    return "".join(number)


TYPED = st.one_of(
    st.text(),
    st.text(alphabet=CHECK_CHARACTERS + "x -\u3000", min_size=15, max_size=22),
    mangled_ids(),
)


@given(value=TYPED)
@example(value="530²29197503121001")
def test_typed_text_is_refused_only_with_a_coded_error(value: str) -> None:
    try:
        number = normalize_resident_id(value)
    except PydanticCustomError as refused:
        assert refused.type.startswith("id_number_")
    else:
        assert len(number) == 18 and number[:17].isascii() and number[:17].isdigit()
        assert number[17] in CHECK_CHARACTERS


# --- (b) the case procedure ------------------------------------------------------------

ACTIONS = ("advance", "approve", "reject", "transfer", "release", "claim")
# Advancing is what most work is made of; drawn more often, sequences reach the last stage.
# (Hypothesis draws the first choice most often: make that one advance.)
actions = st.sampled_from(("advance", "advance", "approve", "advance", *ACTIONS[2:]))
finishing = st.sampled_from(("approve", "advance", *ACTIONS[2:]))


def step(item: Item, status: str, action: str) -> str | None:
    """Where a clerk's action takes a case, by the procedure's functions; None: refused.
    The same rules workflow.py applies around them (assignee, stage work, waiting aside)."""
    working = procedure.in_progress(status)
    match action:
        case "claim":
            return procedure.CLAIMED if status == procedure.OPEN else None
        case "release":
            return procedure.OPEN if status == procedure.CLAIMED else None
        case "advance":
            return procedure.next_status(item, status) if working else None
        case "approve":
            return procedure.DECIDED if working and procedure.at_last_stage(item, status) else None
        case "reject":
            return procedure.DECIDED if working else None
        case "transfer":
            return procedure.TRANSFERRED if working else None
    raise AssertionError(action)


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item.code)
def test_the_procedure_of_each_item_is_a_line(item: Item) -> None:
    steps = procedure.sequence(item)
    assert steps == [procedure.CLAIMED, *(stage.value for stage in item.stages)]
    assert len(set(steps)) == len(steps)
    for here, following in itertools.pairwise(steps):
        assert procedure.next_status(item, here) == following
        assert not procedure.at_last_stage(item, here)
    assert procedure.next_status(item, steps[-1]) is None
    assert procedure.at_last_stage(item, steps[-1])
    for outside in (procedure.OPEN, *procedure.ENDED):
        assert procedure.next_status(item, outside) is None
        assert not procedure.at_last_stage(item, outside)
        assert not procedure.in_progress(outside)
    assert all(procedure.in_progress(s) for s in steps)


@given(
    item=st.sampled_from(ITEMS),
    actions=st.lists(actions, max_size=30),
)
def test_no_illegal_transition_is_reachable(item: Item, actions: list[str]) -> None:
    steps = procedure.sequence(item)
    known = {procedure.OPEN, *steps, *procedure.ENDED}
    status = procedure.OPEN
    for action in actions:
        after = step(item, status, action)
        if status in procedure.ENDED:
            assert after is None, f"{action} after {status}"
        if after is None:
            continue
        assert after in known
        if action == "advance":  # the next stage, never one further, never past the last
            assert steps.index(after) == steps.index(status) + 1
        if action == "approve":
            assert status == steps[-1]
        if after == procedure.DECIDED:
            assert action in ("approve", "reject")
        status = after
    assert status in known


@given(status=st.text(max_size=20))
def test_unknown_statuses_lead_nowhere(status: str) -> None:
    for item in ITEMS:
        if status not in procedure.sequence(item):
            assert procedure.next_status(item, status) is None
            assert not procedure.at_last_stage(item, status)


@pytest.fixture
async def case_api(
    fresh: Redis, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[dict[str, Any]]:
    """Intake and verification in-process, a citizen, and a clerk for each department."""
    async with (
        running("intake", create_intake(fuzz_intake_settings())) as intake,
        running("verification", create_verification(VerificationSettings())) as verification,
    ):
        clerks = {
            department: await staff_headers(
                verification.client,
                sessionmaker,
                username=f"prop-{department}",
                department=department,
            )
            for department in catalog().department_codes()
        }
        yield {
            "intake": intake.client,
            "verification": verification.client,
            "citizen": await citizen_headers(intake.client, "prop-citizen"),
            "clerks": clerks,
            "pipeline": await build_pipeline(fresh, sessionmaker),
        }


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    item=st.sampled_from(ITEMS),
    depth=st.integers(0, 5),
    then=st.lists(finishing, min_size=1, max_size=6),
)
# Every action both allowed and refused, whatever the draws: back to the queue and out to
# another department; approval after a public notice; too late for anything once decided.
@example(
    item=_item("medical_assistance"), depth=0, then=["release", "release", "claim", "transfer"]
)
@example(item=_item("subsistence_allowance"), depth=4, then=["advance", "approve", "reject"])
@example(item=_item("employment_assistance"), depth=0, then=["approve", "advance", "approve"])
async def test_the_api_follows_the_procedure(
    case_api: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    item: Item,
    depth: int,
    then: list[str],
) -> None:
    """The model above against the real service: the same actions on a fresh case are
    accepted or refused as the model says, and lead to the status it says. A clerk claims
    the case and works up to `depth` stages (often all of them); then anything may happen."""
    actions = ["claim", *["advance"] * min(depth, len(item.stages)), *then]
    intake: httpx.AsyncClient = case_api["intake"]
    verification: httpx.AsyncClient = case_api["verification"]
    clerk = case_api["clerks"][item.department]
    created = await intake.post(
        "/api/v1/applications",
        json=application_body(item_code=item.code),
        headers={**case_api["citizen"], "Idempotency-Key": f"prop-{uuid.uuid4()}"},
    )
    assert created.status_code == 201, created.text
    await case_api["pipeline"].drain()
    queue = await verification.get("/api/v1/cases?status=open&limit=100", headers=clerk)
    case_id = next(
        c["id"] for c in queue.json()["items"] if c["application_id"] == created.json()["id"]
    )
    url = f"/api/v1/cases/{case_id}"
    other_item = next(i for i in ITEMS if i.department != item.department)
    bodies = {
        "advance": {},
        "approve": APPROVAL,
        "reject": {"outcome": "rejected", "reason": "经核实不符合条件"},
        "transfer": {"to_item_code": other_item.code, "reason": "应由其他部门办理"},
    }
    paths = {"approve": "decide", "reject": "decide"}
    status = procedure.OPEN
    for action in actions:
        expected = step(item, status, action)
        if action in ("advance", "approve"):  # the stage's own work, done as a clerk would
            detail = (await verification.get(url, headers=clerk)).json()
            if status == "field_check" and detail["field_check"] is None:
                await verification.post(f"{url}/field-check", headers=clerk, json=FIELD_CHECK)
            if status == "village_review":
                await end_public_notice(sessionmaker, case_id)
        response = await verification.post(
            f"{url}/{paths.get(action, action)}", headers=clerk, json=bodies.get(action)
        )
        if expected is None:
            assert response.status_code in (403, 409), (action, status, response.text)
            assert response.json()["error"]["code"]
        else:
            assert response.status_code == 200, (action, status, response.text)
            status = expected
        assert response.status_code != 200 or response.json()["status"] == status
        assert (await verification.get(url, headers=clerk)).json()["status"] == status


# --- (c) the closure counters ----------------------------------------------------------

ZONES = ("Asia/Shanghai", "UTC", "America/New_York")
# Around midnight in Shanghai and the start of daylight saving time in New York.
BASE = datetime(2026, 3, 7, 16, 0, tzinfo=UTC)
moments = st.integers(-3 * 24 * 60, 5 * 24 * 60).map(lambda m: BASE + timedelta(minutes=m))


OUTCOMES = ("approved", "rejected", "withdrawn")


@st.composite
def fact_states(draw: st.DrawFn) -> FactState:
    """A fact as events can leave it: an item (its department follows, as on a transfer),
    a region, a receipt and deadline, maybe a closure with its outcome (set together, as
    facts/service.py `_close` does), a rating, an overdue flag."""
    item = draw(st.sampled_from(ITEMS))
    received = draw(moments)
    closed = draw(st.one_of(st.none(), moments))
    return FactState(
        department=item.department,
        item_code=item.code,
        region_code=draw(st.sampled_from(COUNTIES[:4])),
        received_at=received,
        deadline=received + timedelta(minutes=draw(st.integers(-60, 10 * 24 * 60))),
        closed_at=closed,
        outcome=None
        if closed is None
        else draw(st.sampled_from(["approved", "rejected", "withdrawn"])),
        rating=draw(st.one_of(st.none(), st.integers(1, 5))),
        overdue=draw(st.booleans()),
    )


# Each change: which application (of four), and its fact afterwards (None: the fact is
# gone; nothing deletes facts today, but apply_change takes it).
changes = st.lists(
    st.tuples(st.integers(0, 3), st.one_of(fact_states(), fact_states(), st.none())),
    min_size=1,
    max_size=12,
)


async def _rollups(session: AsyncSession) -> dict[tuple[str, str, date], tuple[Any, ...]]:
    columns = ", ".join(("dimension", "key", "day", "department", *COUNTERS))
    rows = await session.execute(text(f"SELECT {columns} FROM notify.closure_rollups"))
    return {
        (r[0], r[1], r[2]): tuple(r[3:])
        for r in rows
        if any(r[4:])  # a row whose counters all went back to zero counts nothing
    }


async def _set_fact(
    session: AsyncSession, application_id: uuid.UUID, after: FactState | None, zone: ZoneInfo
) -> None:
    """What the notify consumer does per event: lock the fact, change it, move the counters."""
    fact = await session.scalar(
        select(ApplicationFact)
        .where(ApplicationFact.application_id == application_id)
        .with_for_update()
    )
    before = FactState.of(fact)
    if after is None:
        if fact is not None:
            await session.execute(
                delete(ApplicationFact).where(ApplicationFact.application_id == application_id)
            )
    elif fact is None:
        session.add(ApplicationFact(application_id=application_id, **asdict(after)))
    else:
        for name, value in asdict(after).items():
            setattr(fact, name, value)
    await session.flush()
    apply_change(session, before, after, zone)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(zone_name=st.sampled_from(ZONES), history=changes)
async def test_incremental_counters_equal_a_rebuild(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    zone_name: str,
    history: list[tuple[int, FactState | None]],
) -> None:
    zone = ZoneInfo(zone_name)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE notify.application_facts, notify.closure_rollups"))
    applications = [uuid.UUID(int=n + 1) for n in range(4)]
    for which, after in history:
        async with unit_of_work(sessionmaker) as session:
            await _set_fact(session, applications[which], after, zone)
    async with unit_of_work(sessionmaker) as session:
        incremental = await _rollups(session)
        await rebuild(session, zone)
        rebuilt = await _rollups(session)
    assert incremental == rebuilt
    # The closure rate of the totals, as the API computes it, against a recount.
    received = sum(counters[1] for key, counters in rebuilt.items() if key[0] == "item")
    closed = sum(sum(counters[2:5]) for key, counters in rebuilt.items() if key[0] == "item")
    assert percentage(closed, received) == _half_up_percentage(closed, received)


def _half_up_percentage(part: int, whole: int) -> float | None:
    """part / whole in hundredths of a percent, rounded half up, in integers only."""
    if whole == 0:
        return None
    hundredths = (2 * part * 10_000 + whole) // (2 * whole)
    return float(Decimal(hundredths).scaleb(-2))


shares = st.integers(0, 10**9).flatmap(
    lambda whole: st.tuples(st.integers(0, whole), st.just(whole))
)


@given(share=st.one_of(shares, st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))))
@example(share=(462500, 466200))
@example(share=(1, 20000))  # 0.005 exactly: half up gives 0.01 (half even would give 0.0)
@example(share=(0, 0))
def test_percentage_is_a_half_up_recount(share: tuple[int, int]) -> None:
    part, whole = share
    rate = percentage(part, whole)
    assert rate == _half_up_percentage(part, whole)
    if rate is not None and part <= whole:
        assert 0 <= rate <= 100


def test_the_design_example_rounds_to_99_21() -> None:
    assert percentage(462500, 466200) == 99.21
