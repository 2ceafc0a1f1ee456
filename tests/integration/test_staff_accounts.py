"""Staff accounts over HTTP with the real auth: lockout, disabling, password reset, the
admin-only account API, forged and stale tokens, and the `relief users` commands."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import datetime

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.verification.accounts.repository import by_username
from services.verification.accounts.service import MAX_FAILED_LOGINS, disable_user, principal_of
from services.verification.settings import VerificationSettings
from shared.auth import ALGORITHM, Audience, Principal, Role, issue_token
from shared.db import unit_of_work
from tests.conftest import ROOT
from tests.integration.conftest import PASSWORD, staff_headers

Sessions = async_sessionmaker[AsyncSession]
NEW_PASSWORD = "a-new-password-2"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _is_chinese(message: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in message)


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, response.text
    assert _is_chinese(error["message"])


async def _login(verification: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await verification.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


async def _queue(verification: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await verification.get("/api/v1/cases", headers=headers)


async def _account(sessionmaker: Sessions, username: str) -> tuple[int, datetime | None, bool, int]:
    """failed_logins, locked_until, disabled, token_version as stored."""
    async with sessionmaker() as session:
        user = await by_username(session, username)
        assert user is not None
        return user.failed_logins, user.locked_until, user.disabled, user.token_version


async def _admin(verification: httpx.AsyncClient, sessionmaker: Sessions) -> dict[str, str]:
    return await staff_headers(
        verification,
        sessionmaker,
        username="admin",
        role=Role.ADMIN,
        department=None,
        region="530000",
    )


# --- lockout -------------------------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_account_until_the_lock_expires(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    await staff_headers(verification, sessionmaker, username="clerk-lock")

    for attempt in range(1, MAX_FAILED_LOGINS):
        _error(await _login(verification, "clerk-lock", "wrong-password"), 401, "login_failed")
        assert (await _account(sessionmaker, "clerk-lock"))[0] == attempt
    _error(await _login(verification, "clerk-lock", "wrong-password"), 401, "login_failed")
    failed, locked_until, _, _ = await _account(sessionmaker, "clerk-lock")
    assert locked_until is not None

    # While locked even the right password is refused, and says why.
    _error(await _login(verification, "clerk-lock", PASSWORD), 423, "account_locked")

    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE verification.staff_users SET locked_until = now() - interval '1 minute' "
                "WHERE username = 'clerk-lock'"
            )
        )

    response = await _login(verification, "clerk-lock", PASSWORD)
    assert response.status_code == 200, response.text
    assert (await _queue(verification, _bearer(response.json()["access_token"]))).is_success
    failed, locked_until, _, _ = await _account(sessionmaker, "clerk-lock")
    assert (failed, locked_until) == (0, None)

    # The counter starts again from zero: four more mistakes do not lock.
    for _ in range(MAX_FAILED_LOGINS - 1):
        _error(await _login(verification, "clerk-lock", "wrong-password"), 401, "login_failed")
    assert (await _login(verification, "clerk-lock", PASSWORD)).status_code == 200


async def test_an_unknown_username_is_refused_like_a_wrong_password(
    verification: httpx.AsyncClient,
) -> None:
    _error(await _login(verification, "nobody-here", PASSWORD), 401, "login_failed")


# --- disable, enable, reset ------------------------------------------------------------------


async def test_a_disabled_clerk_is_shut_out_at_once_and_back_in_when_enabled(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    clerk = await staff_headers(verification, sessionmaker, username="clerk-off")
    assert (await _queue(verification, clerk)).status_code == 200

    disabled = await verification.post("/api/v1/users/clerk-off/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True

    _error(await _queue(verification, clerk), 401, "account_disabled")
    _error(await _login(verification, "clerk-off", PASSWORD), 401, "account_disabled")
    # A wrong password still reads as a wrong password: no hint that the account exists.
    _error(await _login(verification, "clerk-off", "wrong-password"), 401, "login_failed")

    enabled = await verification.post("/api/v1/users/clerk-off/enable", headers=admin)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["disabled"] is False

    login = await _login(verification, "clerk-off", PASSWORD)
    assert login.status_code == 200, login.text
    assert (await _queue(verification, _bearer(login.json()["access_token"]))).status_code == 200
    # The token from before the disabling stays dead.
    _error(await _queue(verification, clerk), 401, "token_revoked")


async def test_a_password_reset_revokes_old_tokens_and_the_old_password(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    clerk = await staff_headers(verification, sessionmaker, username="clerk-reset")

    reset = await verification.post(
        "/api/v1/users/clerk-reset/reset-password", headers=admin, json={"password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text

    _error(await _queue(verification, clerk), 401, "token_revoked")
    _error(await _login(verification, "clerk-reset", PASSWORD), 401, "login_failed")
    login = await _login(verification, "clerk-reset", NEW_PASSWORD)
    assert login.status_code == 200, login.text
    assert (await _queue(verification, _bearer(login.json()["access_token"]))).status_code == 200


async def test_a_password_reset_lifts_a_lockout(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    await staff_headers(verification, sessionmaker, username="clerk-forgot")
    for _ in range(MAX_FAILED_LOGINS):
        await _login(verification, "clerk-forgot", "wrong-password")
    _error(await _login(verification, "clerk-forgot", PASSWORD), 423, "account_locked")

    reset = await verification.post(
        "/api/v1/users/clerk-forgot/reset-password", headers=admin, json={"password": NEW_PASSWORD}
    )
    assert reset.status_code == 200, reset.text
    assert reset.json()["locked_until"] is None
    assert (await _login(verification, "clerk-forgot", NEW_PASSWORD)).status_code == 200


async def test_a_short_new_password_is_refused_and_changes_nothing(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    clerk = await staff_headers(verification, sessionmaker, username="clerk-short")
    before = await _account(sessionmaker, "clerk-short")

    response = await verification.post(
        "/api/v1/users/clerk-short/reset-password", headers=admin, json={"password": "short"}
    )
    _error(response, 422, "password_too_short")
    assert await _account(sessionmaker, "clerk-short") == before
    assert (await _queue(verification, clerk)).status_code == 200


# --- the admin API ---------------------------------------------------------------------------


async def test_an_admin_creates_lists_and_disables_accounts(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    body = {
        "username": "new-clerk",
        "password": "first-password-1",
        "role": "clerk",
        "department": "medins",
        "region_code": "530129",
        "display_name": "新办事员",
    }
    created = await verification.post("/api/v1/users", headers=admin, json=body)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "username": "new-clerk",
        "display_name": "新办事员",
        "role": "clerk",
        "department": "medins",
        "region_code": "530129",
        "disabled": False,
        "locked_until": None,
    }
    assert (await _login(verification, "new-clerk", "first-password-1")).status_code == 200
    _error(
        await verification.post("/api/v1/users", headers=admin, json=body), 409, "username_taken"
    )

    listed = await verification.get("/api/v1/users", headers=admin)
    assert listed.status_code == 200, listed.text
    assert "password" not in listed.text.lower()
    assert "argon2" not in listed.text
    assert [u["username"] for u in listed.json()["items"]] == ["admin", "new-clerk"]

    disabled = await verification.post("/api/v1/users/new-clerk/disable", headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert "password" not in disabled.text.lower()
    listed = await verification.get("/api/v1/users", headers=admin)
    by_name = {u["username"]: u for u in listed.json()["items"]}
    assert by_name["new-clerk"]["disabled"] is True
    assert by_name["admin"]["disabled"] is False


async def test_the_account_list_pages_by_username(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    admin = await _admin(verification, sessionmaker)
    for name in ("clerk-c", "clerk-a", "clerk-b"):
        await staff_headers(verification, sessionmaker, username=name)

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await verification.get("/api/v1/users", headers=admin, params=params)).json()
        seen += [u["username"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["admin", "clerk-a", "clerk-b", "clerk-c"]
    bad = await verification.get("/api/v1/users", headers=admin, params={"cursor": "%%%"})
    _error(bad, 422, "cursor_invalid")


async def test_admin_api_refusals(verification: httpx.AsyncClient, sessionmaker: Sessions) -> None:
    admin = await _admin(verification, sessionmaker)
    unknown = await verification.post("/api/v1/users/nobody-here/disable", headers=admin)
    _error(unknown, 404, "not_found")
    for action in ("enable", "reset-password"):
        response = await verification.post(
            f"/api/v1/users/nobody-here/{action}", headers=admin, json={"password": NEW_PASSWORD}
        )
        _error(response, 404, "not_found")
    _error(
        await verification.post("/api/v1/users/admin/disable", headers=admin),
        409,
        "cannot_disable_self",
    )
    assert (await verification.get("/api/v1/users", headers=admin)).status_code == 200
    bad_role = await verification.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "x",
            "password": "long-enough-1",
            "role": "citizen",
            "region_code": "530129",
        },
    )
    _error(bad_role, 422, "invalid_input")
    no_department = await verification.post(
        "/api/v1/users",
        headers=admin,
        json={
            "username": "x",
            "password": "long-enough-1",
            "role": "clerk",
            "region_code": "530129",
        },
    )
    _error(no_department, 422, "department_invalid")
    _error(await verification.get("/api/v1/users"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("role", "region"), [(Role.CLERK, "530129"), (Role.SUPERVISOR, "530100")], ids=str
)
async def test_only_admins_may_use_the_account_api(
    verification: httpx.AsyncClient, sessionmaker: Sessions, role: Role, region: str
) -> None:
    await staff_headers(verification, sessionmaker, username="victim")
    caller = await staff_headers(
        verification, sessionmaker, username=f"a-{role}", role=role, region=region
    )
    new_user = {
        "username": "sneaky",
        "password": "long-enough-1",
        "role": "admin",
        "region_code": "530000",
    }
    attempts = [
        verification.get("/api/v1/users", headers=caller),
        verification.post("/api/v1/users", headers=caller, json=new_user),
        verification.post("/api/v1/users/victim/disable", headers=caller),
        verification.post("/api/v1/users/victim/enable", headers=caller),
        verification.post(
            "/api/v1/users/victim/reset-password", headers=caller, json={"password": NEW_PASSWORD}
        ),
    ]
    for attempt in attempts:
        _error(await attempt, 403, "admin_only")
    async with sessionmaker() as session:
        assert await by_username(session, "sneaky") is None
    assert (await _login(verification, "victim", PASSWORD)).status_code == 200


# --- forged and stale tokens -----------------------------------------------------------------


async def _clerk_and_principal(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> tuple[str, Principal]:
    headers = await staff_headers(verification, sessionmaker, username="clerk-tokens")
    async with sessionmaker() as session:
        user = await by_username(session, "clerk-tokens")
        assert user is not None
        return _token(headers), principal_of(user)


async def test_a_tampered_signature_is_refused(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    token, _ = await _clerk_and_principal(verification, sessionmaker)
    assert (await _queue(verification, _bearer(token))).status_code == 200
    header, payload, signature = token.split(".")
    # A character in the middle: the last one may only carry padding bits.
    i = len(signature) // 2
    flipped = signature[:i] + ("A" if signature[i] != "A" else "B") + signature[i + 1 :]
    forged = f"{header}.{payload}.{flipped}"
    _error(await _queue(verification, _bearer(forged)), 401, "token_invalid")


async def test_a_token_signed_with_another_key_is_refused(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    token, _ = await _clerk_and_principal(verification, sessionmaker)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-for-hs256", ALGORITHM)
    assert jwt.decode(forged, options={"verify_signature": False}) == claims
    _error(await _queue(verification, _bearer(forged)), 401, "token_invalid")


async def test_an_expired_token_is_refused(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    _, principal = await _clerk_and_principal(verification, sessionmaker)
    settings = VerificationSettings()
    fresh = issue_token(settings, principal, audience=Audience.STAFF, ttl_seconds=300)
    assert (await _queue(verification, _bearer(fresh))).status_code == 200
    expired = issue_token(settings, principal, audience=Audience.STAFF, ttl_seconds=-10)
    _error(await _queue(verification, _bearer(expired)), 401, "token_expired")


async def test_a_citizen_token_is_refused_by_verification(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    # Same key, same account and role: only the audience says it was issued for citizens.
    _, principal = await _clerk_and_principal(verification, sessionmaker)
    citizen = issue_token(
        VerificationSettings(),
        principal,
        audience=Audience.CITIZEN,
        ttl_seconds=300,
    )
    _error(await _queue(verification, _bearer(citizen)), 401, "token_invalid")


# --- the command line ------------------------------------------------------------------------


async def _relief(*args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        cwd=ROOT,
        env=dict(os.environ),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_relief_users_disable_revokes_the_clerks_token(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    clerk = await staff_headers(verification, sessionmaker, username="clerk-cli")
    assert (await _queue(verification, clerk)).status_code == 200

    code, out, err = await _relief("users", "disable", "--username", "clerk-cli")
    assert code == 0, err
    assert "disabled clerk-cli" in out

    _error(await _queue(verification, clerk), 401, "account_disabled")
    assert (await _account(sessionmaker, "clerk-cli"))[2] is True

    code, out, err = await _relief("users", "list")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("clerk-cli "))
    assert row.split() == ["clerk-cli", "clerk", "medins", "530129", "disabled"]

    code, _, err = await _relief("users", "disable", "--username", f"ghost-{uuid.uuid4().hex[:8]}")
    assert code == 2
    assert "not_found" in err


async def test_relief_users_enable_and_reset_password(
    verification: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    clerk = await staff_headers(verification, sessionmaker, username="clerk-cli2")
    async with unit_of_work(sessionmaker) as session:
        await disable_user(session, "clerk-cli2")
    _error(await _login(verification, "clerk-cli2", PASSWORD), 401, "account_disabled")

    code, _, err = await _relief("users", "enable", "--username", "clerk-cli2")
    assert code == 0, err
    assert (await _login(verification, "clerk-cli2", PASSWORD)).status_code == 200

    code, _, err = await _relief(
        "users",
        "reset-password",
        "--username",
        "clerk-cli2",
        "--password-stdin",
        stdin=NEW_PASSWORD + "\n",
    )
    assert code == 0, err
    _error(await _queue(verification, clerk), 401, "token_revoked")
    assert (await _login(verification, "clerk-cli2", NEW_PASSWORD)).status_code == 200

    code, _, err = await _relief(
        "users", "reset-password", "--username", "clerk-cli2", "--password-stdin", stdin="short\n"
    )
    assert code == 2
    assert "password_too_short" in err
