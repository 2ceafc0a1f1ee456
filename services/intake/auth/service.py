"""Citizen and grid-worker login through WeChat (wx.login code -> jscode2session -> openid),
short-lived access tokens and rotating refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.auth import repository
from services.intake.auth.schemas import TokenOut
from services.intake.models import GridWorker, RefreshToken
from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, issue_token
from shared.errors import (
    AppError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from shared.pii import PiiCipher
from shared.ratelimit import RateLimiter, TooManyRequests
from shared.regions import regions

log = structlog.get_logger(__name__)

DEV_CODE_PREFIX = "dev:"


class WechatLoginFailed(AppError):
    status_code = 401
    code = "wechat_code_invalid"
    message = "微信登录凭证无效或已过期，请重新进入小程序"


class RefreshRefused(Unauthorized):
    # A reused refresh token revokes its family; that revocation must be committed.
    keep_changes = True

    def __init__(self) -> None:
        super().__init__("登录已失效，请重新登录", code="refresh_token_invalid")


@dataclass(frozen=True)
class WechatIdentity:
    openid: str
    session_key: str | None = None
    unionid: str | None = None


async def exchange_code(settings: IntakeSettings, code: str) -> WechatIdentity:
    """Who the wx.login code belongs to, asked of WeChat's jscode2session."""
    if code.startswith(DEV_CODE_PREFIX):
        if not settings.allows_dev_login:
            raise WechatLoginFailed()
        openid = code[len(DEV_CODE_PREFIX) :]
        if not 1 <= len(openid) <= 64:
            raise InvalidInput("开发登录码格式应为 dev:<openid>", code="dev_code_invalid")
        return WechatIdentity(openid=openid)
    if not settings.wechat_appid or not settings.wechat_secret:
        log.error("wechat_not_configured")
        raise ServiceUnavailable("微信登录暂未开通，请稍后再试")
    try:
        async with httpx.AsyncClient(
            base_url=settings.wechat_base_url, timeout=settings.wechat_timeout_seconds
        ) as client:
            response = await client.get(
                "/sns/jscode2session",
                params={
                    "appid": settings.wechat_appid,
                    "secret": settings.wechat_secret,
                    "js_code": code,
                    "grant_type": "authorization_code",
                },
            )
        data = response.json()
        if not isinstance(data, dict):
            raise TypeError("jscode2session did not answer an object")
    except (httpx.HTTPError, ValueError, TypeError) as exc:
        log.warning("wechat_unreachable", error=repr(exc))
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后再试") from exc
    return _identity_from(data)


def _identity_from(data: dict[str, object]) -> WechatIdentity:
    try:
        errcode = int(str(data.get("errcode") or 0))
    except ValueError:
        errcode = -2
    openid = data.get("openid")
    if errcode == 0 and isinstance(openid, str) and openid:
        session_key = data.get("session_key")
        unionid = data.get("unionid")
        return WechatIdentity(
            openid=openid,
            session_key=session_key if isinstance(session_key, str) else None,
            unionid=unionid if isinstance(unionid, str) else None,
        )
    log.info("wechat_login_refused", errcode=errcode)
    match errcode:
        case 40029 | 40163:  # invalid code / code already used
            raise WechatLoginFailed()
        case 45011:  # too many logins from this user
            raise TooManyRequests("登录过于频繁，请一分钟后再试", headers={"Retry-After": "60"})
        case 40226:  # WeChat flags the user as high-risk
            raise Forbidden("微信判定该账号存在风险，暂时无法登录", code="wechat_user_blocked")
        case -1:  # WeChat busy
            raise ServiceUnavailable("微信服务繁忙，请稍后再试")
        case _:  # our appid/secret refused, or an answer we do not know
            log.error("wechat_login_error", errcode=errcode)
            raise ServiceUnavailable("微信登录暂时不可用，请稍后再试")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _principal_for(session: AsyncSession, openid: str) -> Principal:
    worker = await repository.active_grid_worker(session, openid)
    if worker is not None:
        return Principal(subject=openid, role=Role.GRID_WORKER, region=worker.region_code)
    return Principal(subject=openid, role=Role.CITIZEN)


async def _tokens(
    session: AsyncSession,
    settings: IntakeSettings,
    openid: str,
    *,
    family_id: uuid.UUID | None = None,
) -> TokenOut:
    principal = await _principal_for(session, openid)
    refresh = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    repository.add_refresh_token(
        session,
        RefreshToken(
            id=uuid.uuid4(),
            token_hash=_hash_token(refresh),
            family_id=family_id or uuid.uuid4(),
            openid=openid,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
        ),
    )
    await session.flush()
    return TokenOut(
        access_token=issue_token(
            settings,
            principal,
            audience=Audience.CITIZEN,
            ttl_seconds=settings.access_token_ttl_seconds,
        ),
        expires_in=settings.access_token_ttl_seconds,
        refresh_token=refresh,
        refresh_expires_in=settings.refresh_token_ttl_seconds,
        role=principal.role.value,
    )


async def login(
    session: AsyncSession,
    settings: IntakeSettings,
    cipher: PiiCipher,
    limiter: RateLimiter,
    code: str,
) -> TokenOut:
    identity = await exchange_code(settings, code)
    await limiter.hit(settings.rate_login_per_user, "login-user", identity.openid)
    if identity.session_key is not None:
        await repository.save_wechat_session(
            session,
            identity.openid,
            cipher.encrypt(identity.session_key, purpose="wechat_session_key"),
            identity.unionid,
            datetime.now(UTC),
        )
    return await _tokens(session, settings, identity.openid)


async def refresh(session: AsyncSession, settings: IntakeSettings, token: str) -> TokenOut:
    stored = await repository.refresh_token_by_hash(session, _hash_token(token))
    now = datetime.now(UTC)
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise RefreshRefused()
    if stored.used_at is not None:
        # A refresh token works once. Seeing it twice means a copy exists elsewhere: end
        # every session descended from the same login.
        log.warning("refresh_token_reused", family_id=str(stored.family_id))
        await repository.revoke_family(session, stored.family_id, now)
        await session.flush()
        raise RefreshRefused()
    stored.used_at = now
    return await _tokens(session, settings, stored.openid, family_id=stored.family_id)


async def register_grid_worker(
    session: AsyncSession, *, openid: str, name: str, region_code: str
) -> None:
    if not regions().is_county(region_code):
        raise InvalidInput("网格员的地区必须是云南省的县级代码", code="region_invalid")
    await repository.upsert_grid_worker(
        session, GridWorker(openid=openid, name=name, region_code=region_code)
    )


async def deactivate_grid_worker(session: AsyncSession, *, openid: str) -> None:
    """His tokens stop working at once (checked on every request)."""
    if not await repository.deactivate_grid_worker(session, openid):
        raise NotFound("找不到该网格员")
