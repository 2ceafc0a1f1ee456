"""The access-control matrix as data: every endpoint of the three services, and what each of
nine principals must get from it. `test_access_matrix.py` turns every cell into a test.

Codes read left to right in the order of `PRINCIPALS`. `200+` / `200-` on a list endpoint:
200, and the world's object named by `lists` must (+) / must not (-) be in the answer.
Placeholders in paths and bodies (`{app}`, `{case}`...) are filled per cell: the shared world,
a fresh object in the right state (`fresh`, for mutating endpoints, so that the allowed
caller's call succeeds and a refusal is a refusal of the caller, not of the state), and
per-cell values (`{unique}`, `{id_number}`). Bodies are valid: authorization is what is
tested (the order of authorization and validation has its own cases below).

The rule the table follows: a refusal for the caller's role is 403 whatever the id (so it
tells nothing about the object); an object outside the caller's reach is 404, the same
answer as for an id that does not exist; no token, or one of the other audience, is 401.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from tests.factories import application_body
from tests.integration.conftest import FIELD_CHECK, PASSWORD

PRINCIPALS = (
    "anonymous",
    "citizen_a",  # owns the world's application
    "citizen_b",
    "grid_worker",  # county 530129, did not enter the application
    "clerk_civil",  # another department, same county
    "clerk_other_county",  # medins, 532901
    "clerk",  # medins, 530129: the case's county and department, its assignee
    "supervisor",  # medins, prefecture 530100
    "admin",  # province 530000
)


class Fresh(enum.StrEnum):
    """A new object per cell, in the state where the allowed caller's call succeeds."""

    APP_SUBMITTED = "app_submitted"
    APP_NEEDS_INFO = "app_needs_info"
    APP_CLOSED = "app_closed"
    CASE_OPEN = "case_open"
    CASE_CLAIMED = "case_claimed"
    CASE_IN_FIELD_CHECK = "case_in_field_check"
    DEAD_NOTIFICATION = "dead_notification"
    REFRESH_TOKEN = "refresh_token"


@dataclass(frozen=True)
class Endpoint:
    service: str
    method: str
    path: str
    codes: str
    json: Any = None
    fresh: Fresh | None = None
    lists: str | None = None
    upload: bool = False
    reveals_pii: bool = False  # answers the full ID number to those allowed

    @property
    def name(self) -> str:
        return f"{self.service} {self.method} {self.path}"

    @property
    def public(self) -> bool:
        return all(code == "200" for code in self.codes.split())

    def expected(self) -> dict[str, tuple[int, bool | None]]:
        codes = self.codes.split()
        assert len(codes) == len(PRINCIPALS), self.name
        return {
            principal: (int(code[:3]), {"+": True, "-": False}.get(code[3:]))
            for principal, code in zip(PRINCIPALS, codes, strict=True)
        }


#               anon A   B   grid civ cty clerk sup adm
PUBLIC = "200 200 200 200 200 200 200 200 200"
OWNER = "401 200 404 404 401 401 401 401 401"
CASE_READ = "401 401 401 401 404 404 200 200 200"
ASSIGNEE = "401 401 401 401 404 404 200 403 403"
ADMIN = "401 401 401 401 403 403 403 403 200"

_OPS = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
)

# A valid application; `{id_number}` is new per cell, so none is a duplicate of another.
_APPLICATION = application_body()
_APPLICATION["applicant"] = {**_APPLICATION["applicant"], "id_number": "{id_number}"}

INTAKE = [
    *(Endpoint("intake", "GET", path, PUBLIC) for path in _OPS),
    Endpoint("intake", "POST", "/api/v1/auth/wechat", PUBLIC, {"code": "dev:matrix-{unique}"}),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/auth/refresh",
        PUBLIC,
        {"refresh_token": "{refresh_token}"},
        fresh=Fresh.REFRESH_TOKEN,
    ),
    Endpoint("intake", "GET", "/api/v1/catalog", PUBLIC),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/applications",
        "401 201 201 201 401 401 401 401 401",
        _APPLICATION,
    ),
    Endpoint(
        "intake",
        "GET",
        "/api/v1/applications?limit=100",
        "401 200+ 200- 200- 401 401 401 401 401",
        lists="app",
    ),
    Endpoint("intake", "GET", "/api/v1/applications/{app}", OWNER),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/applications/{app}/supplements",
        OWNER,
        {"message": "已补充住院发票"},
        fresh=Fresh.APP_NEEDS_INFO,
    ),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/applications/{app}/withdraw",
        OWNER,
        {"reason": "已自行解决"},
        fresh=Fresh.APP_SUBMITTED,
    ),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/applications/{app}/rating",
        # A grid worker may never rate: refused for his role before any lookup, for every id.
        "401 200 404 403 401 401 401 401 401",
        {"score": 5},
        fresh=Fresh.APP_CLOSED,
    ),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/applications/{app}/attachments",
        "401 201 404 404 401 401 401 401 401",
        fresh=Fresh.APP_SUBMITTED,
        upload=True,
    ),
    Endpoint("intake", "GET", "/api/v1/applications/{app}/attachments/{att}", OWNER),
    # B's attachment asked for through A's application: nobody gets it.
    Endpoint(
        "intake",
        "GET",
        "/api/v1/applications/{app}/attachments/{att_b}",
        "401 404 404 404 401 401 401 401 401",
    ),
    Endpoint(
        "intake",
        "POST",
        "/api/v1/me/bindings",
        "401 200 200 403 401 401 401 401 401",
        {"name": "王老五", "id_number": "{id_number}", "phone": "13900000000"},
    ),
]

VERIFICATION = [
    *(Endpoint("verification", "GET", path, PUBLIC) for path in _OPS),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/auth/login",
        PUBLIC,
        {"username": "matrix-login", "password": PASSWORD},
    ),
    Endpoint("verification", "GET", "/api/v1/users", ADMIN),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/users",
        "401 401 401 401 403 403 403 403 201",
        {
            "username": "new-{unique}",
            "password": "first-password-1",
            "role": "clerk",
            "department": "medins",
            "region_code": "530129",
        },
    ),
    *(
        Endpoint(
            "verification",
            "POST",
            f"/api/v1/users/{{user}}/{action}",
            ADMIN,  # on the world's `matrix-victim`: the answer does not depend on his state
            body,
        )
        for action, body in (
            ("disable", None),
            ("enable", None),
            ("reset-password", {"password": "a-new-password-2"}),
        )
    ),
    Endpoint(
        "verification",
        "GET",
        "/api/v1/cases?limit=100",
        "401 401 401 401 200- 200- 200+ 200+ 200+",
        lists="case",
    ),
    # Filtering by a county cannot widen the scope.
    Endpoint(
        "verification",
        "GET",
        "/api/v1/cases?region=530129&limit=100",
        "401 401 401 401 200- 403 200+ 200+ 200+",
        lists="case",
    ),
    Endpoint("verification", "GET", "/api/v1/cases/{case}", CASE_READ),
    Endpoint("verification", "GET", "/api/v1/cases/{case}/history", CASE_READ),
    # medical_assistance has no village review: those who may see the case reach the state
    # check (409 no_public_notice); the others are stopped before it.
    Endpoint(
        "verification",
        "GET",
        "/api/v1/cases/{case}/notice",
        "401 401 401 401 404 404 409 409 409",
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/claim",
        ASSIGNEE,  # only clerks claim: 403 clerk_only for supervisor and admin
        fresh=Fresh.CASE_OPEN,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/release",
        ASSIGNEE,
        fresh=Fresh.CASE_CLAIMED,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/advance",
        ASSIGNEE,
        {"note": "综合研判完成"},
        fresh=Fresh.CASE_CLAIMED,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/field-check",
        ASSIGNEE,
        FIELD_CHECK,
        fresh=Fresh.CASE_IN_FIELD_CHECK,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/request-info",
        ASSIGNEE,
        {"message": "请上传住院发票"},
        fresh=Fresh.CASE_CLAIMED,
    ),
    # Supervisors (and the admin) may transfer a case they do not work.
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/transfer",
        CASE_READ,
        {"to_item_code": "temporary_assistance", "reason": "属于民政临时救助"},
        fresh=Fresh.CASE_CLAIMED,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/decide",
        ASSIGNEE,
        {"outcome": "rejected", "measures": [], "reason": "家庭人均收入高于监测线"},
        fresh=Fresh.CASE_CLAIMED,
    ),
    # Assigning is for supervisors: a clerk is refused for his role, whatever the case.
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/assign",
        "401 401 401 401 403 403 403 200 200",
        {"username": "matrix-clerk-2", "reason": "承办人休假"},
        fresh=Fresh.CASE_CLAIMED,
    ),
    Endpoint(
        "verification",
        "POST",
        "/api/v1/cases/{case}/reveal",
        # An admin manages accounts; he does not look at citizens' identities.
        "401 401 401 401 404 404 200 200 403",
        {"field": "id_number", "reason": "核对身份"},
        reveals_pii=True,
    ),
    Endpoint("verification", "GET", "/api/v1/cases/{case}/attachments/{case_att}", CASE_READ),
    Endpoint(
        "verification",
        "GET",
        "/api/v1/cases/{case}/attachments/{case_att_b}",
        "401 401 401 401 404 404 404 404 404",
    ),
]

NOTIFY = [
    *(Endpoint("notify", "GET", path, PUBLIC) for path in _OPS),
    Endpoint("notify", "GET", "/dashboard", PUBLIC),
    Endpoint("notify", "GET", "/dashboard/static/dashboard.js", PUBLIC),
    Endpoint("notify", "GET", "/api/v1/metrics/closure", PUBLIC),
    Endpoint("notify", "GET", "/api/v1/metrics/closure?group_by=region", PUBLIC),
    Endpoint("notify", "GET", "/api/v1/metrics/closure?group_by=item", PUBLIC),
    Endpoint(
        "notify",
        "GET",
        "/api/v1/notifications?application_id={app}&limit=100",
        "401 401 401 401 403 403 403 403 200+",
        lists="notification",
    ),
    Endpoint("notify", "GET", "/api/v1/notifications/{notification}", ADMIN),
    Endpoint(
        "notify",
        "POST",
        "/api/v1/notifications/{notification}/replay",
        ADMIN,
        fresh=Fresh.DEAD_NOTIFICATION,
    ),
    # The world's case has a due-soon reminder for its clerk.
    Endpoint(
        "notify",
        "GET",
        "/api/v1/reminders",
        "401 401 401 401 200- 200- 200+ 200+ 200+",
        lists="case",
    ),
]

ENDPOINTS = [*INTAKE, *VERIFICATION, *NOTIFY]

# Cells whose answer is wrong today: "<endpoint name> <principal>" -> what is wrong.
FINDINGS: dict[str, str] = {}


# --- forged and stale tokens: one endpoint per service, the token of an allowed principal ----

TOKEN_ENDPOINTS = {
    "intake": ("/api/v1/applications", "citizen_a"),
    "verification": ("/api/v1/cases", "admin"),
    "notify": ("/api/v1/notifications", "admin"),
}
# variant -> (status, error code)
TOKEN_VARIANTS: dict[str, tuple[int, str | None]] = {
    "genuine": (200, None),  # the control: the same call with the token as issued
    "tampered_signature": (401, "token_invalid"),
    "expired": (401, "token_expired"),
    "other_key": (401, "token_invalid"),
    "alg_none": (401, "token_invalid"),
    "refresh_type": (401, "token_invalid"),  # same key and audience, typ=refresh
}
# Per service: intake's real refresh token (opaque); a staff token issued before the account
# was disabled.
EXTRA_TOKEN_VARIANTS: dict[str, dict[str, tuple[int, str | None]]] = {
    "intake": {"refresh_token_as_bearer": (401, "token_invalid")},
    "verification": {"disabled_account": (401, "account_disabled")},
    "notify": {"disabled_account": (401, "account_disabled")},
}
TOKEN_FINDINGS: dict[str, str] = {}


# --- what a binding (POST /me/bindings) opens --------------------------------------------------
# Per cell: citizen A submits an application for a person X himself, a grid worker enters
# another for X, and citizen D (not A) binds himself to X's name, ID number and phone.


@dataclass(frozen=True)
class BindingCase:
    method: str
    path: str
    status: int
    listed: bool | None = None  # for the list: is A's own application in it?


BINDING_CASES = [
    # The control: what the grid worker entered for X is D's to see.
    BindingCase("GET", "/api/v1/applications/{entered}", 200),
    BindingCase("GET", "/api/v1/applications/{own}", 404),
    BindingCase("GET", "/api/v1/applications/{own}/attachments/{own_att}", 404),
    BindingCase("POST", "/api/v1/applications/{own}/withdraw", 404),
    BindingCase("GET", "/api/v1/applications?limit=100", 200, listed=False),
]


# --- does authorization run before body validation? ------------------------------------------


@dataclass(frozen=True)
class OrderCase:
    name: str
    service: str
    method: str
    path: str
    principal: str
    content: str | None  # raw body, sent as application/json
    status: int


ORDER_CASES = [
    # The auth dependency runs before the body is validated: no 422 hint without a token.
    OrderCase(
        "schema-invalid body", "intake", "POST", "/api/v1/applications", "anonymous", "{}", 401
    ),
    OrderCase(
        "schema-invalid body",
        "verification",
        "POST",
        "/api/v1/cases/{case}/decide",
        "anonymous",
        "{}",
        401,
    ),
    OrderCase("schema-invalid body", "verification", "POST", "/api/v1/users", "clerk", "{}", 403),
    OrderCase(
        "invalid path id", "verification", "GET", "/api/v1/cases/not-a-uuid", "anonymous", None, 401
    ),
    # An authenticated clerk's body is validated before the handler's scope check: 422 for a
    # case he cannot see, the same as for one that does not exist (so nothing leaks).
    *(
        OrderCase("schema-invalid body", "verification", "POST", path, "clerk_civil", "{}", 422)
        for path in (
            "/api/v1/cases/{case}/decide",
            "/api/v1/cases/00000000-0000-4000-8000-000000000000/decide",
        )
    ),
    # Malformed JSON is refused while the request is read, before any dependency.
    OrderCase("malformed JSON", "intake", "POST", "/api/v1/applications", "anonymous", "{", 422),
]
