"""Request bodies a real client would send, for the operations whose schema alone cannot
say what is valid (an ID number's check character, a catalog item code, a known account):
mixed with schemathesis' own bodies so that some requests get past validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hypothesis import strategies as st
from stdnum.cn import ric

from services.intake.applications.schemas import HouseholdCategory
from services.verification.cases.schemas import MeasureType
from shared.catalog import catalog
from shared.regions import regions
from tests.factories import JPEG, PDF, application_body
from tests.fuzz.world import STAFF_USERNAMES
from tests.integration.conftest import PASSWORD

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass(frozen=True)
class Realistic:
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    # Send a new Idempotency-Key (the sender numbers them): hypothesis' minimal draws
    # repeat, and a repeated key with another body is refused before anything else.
    fresh_key: bool = False


ITEM_CODES = tuple(item.code for item in catalog().items)
DEPARTMENTS = tuple(catalog().department_codes())
# Mostly the seeded county, so that cases land in the fuzzed clerk's queue.
COUNTIES = ("530129", "530129", "530102", *sorted(regions().counties)[:5])
NAMES = st.sampled_from(["张三", "李四", "王老五", "赵 六", "A" * 50])
TEXT = st.text(min_size=0, max_size=60)
PHONES = st.sampled_from(["１３８１２３４５６７８", "+86 138-1234-5678", "12345", "2381234567"])


@st.composite
def resident_ids(draw: st.DrawFn, *, wrong_check: bool = False) -> str:
    region = draw(st.sampled_from(COUNTIES))
    born = draw(st.dates(min_value=date(1920, 1, 1), max_value=date(2025, 12, 31)))
    body = f"{region}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    check = ric.calc_check_digit(body + "0")
    if wrong_check:
        check = "0" if check != "0" else "1"
    return body + check


# At most one flaw per application, none in about half of them: a flaw is refused before
# the rest of the application is looked at.
FLAWS = st.sampled_from([None] * 6 + ["check", "phone", "income", "form", "region"])


@st.composite
def applications(draw: st.DrawFn) -> Realistic:
    flaw = draw(FLAWS)
    item_code = draw(st.sampled_from(ITEM_CODES))
    income: object = draw(st.integers(0, 100_000))
    if flaw == "income":
        income = draw(st.sampled_from(["6200.50", "1e3", "12.345", "-1", "NaN", ""]))
    body = application_body(
        item_code=item_code,
        applicant={
            "name": draw(NAMES),
            "id_number": draw(resident_ids(wrong_check=flaw == "check")),
            "phone": draw(PHONES) if flaw == "phone" else "13812345678",
        },
        household={
            "region_code": draw(st.sampled_from(COUNTIES)) if flaw == "region" else "530129",
            "size": draw(st.integers(1, 30)),
            "annual_income_per_capita": income,
            "category": draw(st.sampled_from([c.value for c in HouseholdCategory])),
        },
        description=draw(st.text(min_size=1, max_size=80)),
    )
    if flaw == "form":  # another item's form: the form check must refuse it
        body["form"] = draw(st.sampled_from([{}, {"unknown_field": 1}, {"amount": "abc"}]))
    if draw(st.integers(0, 4)) == 0:  # the same key again: the first answer, or refused
        return Realistic(body, {"Idempotency-Key": "fuzz-repeated-key"})
    return Realistic(body, fresh_key=True)


@st.composite
def bindings(draw: st.DrawFn) -> Realistic:
    return Realistic(
        {
            "name": draw(NAMES),
            "id_number": draw(resident_ids(wrong_check=draw(st.integers(0, 5)) == 0)),
            "phone": draw(st.one_of(st.just("13812345678"), PHONES)),
        }
    )


def wechat_codes() -> st.SearchStrategy[Realistic]:
    """Dev codes, codes the WeChat stand-in accepts, and ones it refuses as WeChat does
    (not "busy" or "html": WeChat being down is a 503 by design, not the client's doing)."""
    openids = st.text(min_size=0, max_size=70)
    return st.one_of(
        openids.map(lambda openid: Realistic({"code": f"dev:{openid}"})),
        openids.map(lambda openid: Realistic({"code": f"good-{openid}"})),
        st.sampled_from(["invalid", "used", "limited", "risky"]).map(
            lambda code: Realistic({"code": code})
        ),
    )


def logins() -> st.SearchStrategy[Realistic]:
    return st.builds(
        lambda username, password: Realistic({"username": username, "password": password}),
        st.sampled_from([*STAFF_USERNAMES, "nobody"]),
        st.one_of(st.just(PASSWORD), TEXT.filter(bool)),
    )


def transfers() -> st.SearchStrategy[Realistic]:
    return st.builds(
        lambda code, reason: Realistic({"to_item_code": code, "reason": reason}),
        st.sampled_from(ITEM_CODES),
        st.text(min_size=2, max_size=40),
    )


def assignments() -> st.SearchStrategy[Realistic]:
    return st.builds(
        lambda username, reason: Realistic({"username": username, "reason": reason}),
        st.sampled_from([*STAFF_USERNAMES, "nobody"]),
        TEXT,
    )


# role -> (departments, regions) that fit it
SCOPES = {
    "clerk": (DEPARTMENTS, ("530129", "530102")),
    "supervisor": (DEPARTMENTS, ("530100", "530300")),
    "admin": ((None,), ("530000",)),
}


@st.composite
def new_users(draw: st.DrawFn) -> Realistic:
    role = draw(st.sampled_from(sorted(SCOPES)))
    departments, regions_ = SCOPES[role]
    if draw(st.integers(0, 3)) == 0:  # a scope that does not fit the role
        departments, regions_ = (None, "nowhere", *DEPARTMENTS), ("530129", "530100", "999999")
    return Realistic(
        {
            "username": draw(st.text(min_size=1, max_size=50)),
            "password": draw(st.sampled_from(["short", "long-enough-password"])),
            "role": role,
            "department": draw(st.sampled_from(departments)),
            "region_code": draw(st.sampled_from(regions_)),
            "display_name": draw(st.one_of(st.none(), NAMES)),
        }
    )


def decisions() -> st.SearchStrategy[Realistic]:
    measure = st.fixed_dictionaries(
        {
            "type": st.sampled_from([m.value for m in MeasureType]),
            "description": st.text(min_size=1, max_size=40),
        }
    )
    return st.one_of(
        st.builds(
            lambda measures, reason: Realistic(
                {"outcome": "approved", "measures": measures, "reason": reason}
            ),
            st.lists(measure, min_size=1, max_size=3),
            TEXT,
        ),
        st.builds(
            lambda reason: Realistic({"outcome": "rejected", "measures": [], "reason": reason}),
            st.text(min_size=1, max_size=60),
        ),
    )


def field_checks() -> st.SearchStrategy[Realistic]:
    return st.builds(
        lambda visited, findings, confirmed, income: Realistic(
            {
                "visited_on": visited.isoformat(),
                "findings": findings,
                "household_confirmed": confirmed,
                "income_per_capita_verified": income,
            }
        ),
        st.dates(min_value=date(2020, 1, 1), max_value=date(2026, 1, 1)),
        st.text(min_size=1, max_size=60),
        st.booleans(),
        st.one_of(st.none(), st.integers(0, 100_000), st.just("6200.50")),
    )


def uploads() -> st.SearchStrategy[Realistic]:
    files = st.sampled_from([JPEG, PNG, PDF, b"", b"MZ\x90\x00 not a picture"])
    return files.map(lambda data: Realistic({"file": data}, media_type="multipart/form-data"))


REALISTIC: dict[tuple[str, str], st.SearchStrategy[Realistic]] = {
    ("intake", "POST /api/v1/auth/wechat"): wechat_codes(),
    ("intake", "POST /api/v1/applications"): applications(),
    ("intake", "POST /api/v1/me/bindings"): bindings(),
    ("verification", "POST /api/v1/auth/login"): logins(),
    ("verification", "POST /api/v1/cases/{case_id}/transfer"): transfers(),
    ("verification", "POST /api/v1/cases/{case_id}/assign"): assignments(),
    ("verification", "POST /api/v1/users"): new_users(),
    ("verification", "POST /api/v1/cases/{case_id}/decide"): decisions(),
    ("verification", "POST /api/v1/cases/{case_id}/field-check"): field_checks(),
    ("intake", "POST /api/v1/applications/{application_id}/attachments"): uploads(),
}
