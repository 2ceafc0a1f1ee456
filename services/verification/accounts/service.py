"""Staff accounts: creation, login with lockout, token checks, and their administration
(disable, enable, password reset)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from pwdlib import PasswordHash
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.accounts import repository
from services.verification.accounts.schemas import StaffOut, StaffTokenOut, UserOut, UserPage
from services.verification.models import StaffUser
from services.verification.settings import VerificationSettings
from shared.auth import Audience, Principal, Role, issue_token
from shared.catalog import catalog
from shared.errors import AppError, Conflict, InvalidInput, NotFound, Unauthorized
from shared.pagination import decode_cursor, encode_cursor
from shared.regions import regions

MAX_FAILED_LOGINS = 5
MIN_PASSWORD_LENGTH = 8
LOCKOUT = timedelta(minutes=15)
STAFF_ROLES = (Role.CLERK, Role.SUPERVISOR, Role.ADMIN)

_hasher = PasswordHash.recommended()
# Verified against when the username is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class LoginFailed(Unauthorized):
    keep_changes = True  # the failed attempt counts towards the lockout

    def __init__(self) -> None:
        super().__init__("用户名或密码错误", code="login_failed")


class AccountLocked(AppError):
    status_code = 423
    code = "account_locked"
    message = "登录失败次数过多，账号已临时锁定，请15分钟后再试或联系管理员"


def _check_scope(role: Role, department: str | None, region_code: str) -> None:
    if role not in STAFF_ROLES:
        raise InvalidInput("角色应为 clerk、supervisor 或 admin", code="role_invalid")
    table = regions()
    if role is Role.CLERK:
        if department is None or catalog().department(department) is None:
            raise InvalidInput("办事员必须属于目录中的一个部门", code="department_invalid")
        if not table.is_county(region_code):
            raise InvalidInput("办事员的地区必须是云南省的县级代码", code="region_invalid")
    elif role is Role.SUPERVISOR:
        if department is None or catalog().department(department) is None:
            raise InvalidInput("督办人员必须属于目录中的一个部门", code="department_invalid")
        if not table.is_prefecture(region_code):
            raise InvalidInput("督办人员的地区必须是云南省的州市级代码", code="region_invalid")
    elif region_code != table.province.code:
        raise InvalidInput("管理员的地区必须是全省代码 530000", code="region_invalid")
    elif department is not None:
        raise InvalidInput("管理员不属于具体部门", code="department_invalid")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"密码至少{MIN_PASSWORD_LENGTH}位", code="password_too_short")


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    role: Role,
    department: str | None,
    region_code: str,
    display_name: str | None = None,
) -> StaffUser:
    _check_scope(role, department, region_code)
    _check_password(password)
    if await repository.by_username(session, username) is not None:
        raise Conflict("用户名已存在", code="username_taken")
    user = StaffUser(
        id=uuid.uuid4(),
        username=username,
        display_name=display_name or username,
        password_hash=await to_thread.run_sync(_hasher.hash, password),
        role=role.value,
        department=department,
        region_code=region_code,
    )
    repository.add(session, user)
    await session.flush()
    return user


async def login(
    session: AsyncSession, settings: VerificationSettings, username: str, password: str
) -> StaffTokenOut:
    user = await repository.by_username(session, username)
    now = datetime.now(UTC)
    if user is None:
        await to_thread.run_sync(_hasher.verify, password, _DUMMY_HASH)
        raise LoginFailed()
    if user.locked_until is not None and user.locked_until > now:
        raise AccountLocked()
    valid = await to_thread.run_sync(_hasher.verify, password, user.password_hash)
    if not valid:
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        await session.flush()
        raise LoginFailed()
    if user.disabled:
        raise Unauthorized("账号已停用，请联系管理员", code="account_disabled")
    user.failed_logins = 0
    user.locked_until = None
    token = issue_token(
        settings,
        principal_of(user),
        audience=Audience.STAFF,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    return StaffTokenOut(
        access_token=token,
        expires_in=settings.access_token_ttl_seconds,
        user=StaffOut(
            username=user.username,
            display_name=user.display_name,
            role=user.role,
            department=user.department,
            region_code=user.region_code,
        ),
    )


def principal_of(user: StaffUser) -> Principal:
    return Principal(
        subject=str(user.id),
        role=Role(user.role),
        department=user.department,
        region=user.region_code,
        token_version=user.token_version,
    )


async def active_principal(session: AsyncSession, principal: Principal) -> StaffUser:
    """The account behind a token, refusing disabled accounts and superseded tokens. A
    snapshot outside the session, for reading: what changes an account loads it anew."""
    try:
        user_id = uuid.UUID(principal.subject)
    except ValueError as exc:
        raise Unauthorized("登录凭证无效，请重新登录", code="token_invalid") from exc
    user = await repository.snapshot_by_id(session, user_id)
    if user is None or user.disabled:
        raise Unauthorized("账号已停用，请联系管理员", code="account_disabled")
    if user.token_version != principal.token_version:
        raise Unauthorized("登录已失效，请重新登录", code="token_revoked")
    return user


async def _existing(session: AsyncSession, username: str) -> StaffUser:
    user = await repository.by_username(session, username)
    if user is None:
        raise NotFound("找不到该工作人员账号")
    return user


async def disable_user(
    session: AsyncSession, username: str, *, acting: StaffUser | None = None
) -> StaffUser:
    """Stop the account: login is refused and every token already issued stops working.

    `acting` is the admin doing it through the API; he may not disable himself, which would
    leave him locked out mid-session (the command line has no such guard: it is the way back).
    """
    user = await _existing(session, username)
    if acting is not None and acting.id == user.id:
        raise Conflict("不能停用自己的账号", code="cannot_disable_self")
    user.disabled = True
    user.token_version += 1
    await session.flush()
    return user


async def enable_user(session: AsyncSession, username: str) -> StaffUser:
    """Let the account log in again. Tokens from before it was disabled stay revoked."""
    user = await _existing(session, username)
    user.disabled = False
    await session.flush()
    return user


async def reset_password(session: AsyncSession, username: str, new_password: str) -> StaffUser:
    """Set a new password, lift a lockout, and revoke every token issued under the old one."""
    _check_password(new_password)
    user = await _existing(session, username)
    user.password_hash = await to_thread.run_sync(_hasher.hash, new_password)
    user.failed_logins = 0
    user.locked_until = None
    user.token_version += 1
    await session.flush()
    return user


def user_out(user: StaffUser, now: datetime | None = None) -> UserOut:
    now = now or datetime.now(UTC)
    locked = user.locked_until is not None and user.locked_until > now
    return UserOut(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        department=user.department,
        region_code=user.region_code,
        disabled=user.disabled,
        locked_until=user.locked_until if locked else None,
    )


async def list_users(session: AsyncSession, *, limit: int, cursor: str | None) -> UserPage:
    """Every staff account, by username."""
    after = decode_cursor(cursor, 1)[0] if cursor else None
    rows = await repository.listing(session, after_username=after, limit=limit + 1)
    now = datetime.now(UTC)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].username) if len(rows) > limit else None
    return UserPage(items=[user_out(u, now) for u in page], next_cursor=next_cursor)
