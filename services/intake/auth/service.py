"""Citizen login through WeChat (wx.login code -> jscode2session -> openid)."""

from __future__ import annotations

import httpx
import structlog

from services.intake.settings import IntakeSettings
from shared.auth import Audience, Principal, Role, issue_token
from shared.errors import AppError, InvalidInput, ServiceUnavailable

log = structlog.get_logger(__name__)

DEV_CODE_PREFIX = "dev:"


class WechatLoginFailed(AppError):
    status_code = 401
    code = "wechat_code_invalid"
    message = "微信登录凭证无效或已过期，请重新进入小程序"


async def exchange_code(settings: IntakeSettings, code: str) -> str:
    """The openid for a wx.login code."""
    if code.startswith(DEV_CODE_PREFIX):
        if not settings.allows_dev_login:
            raise WechatLoginFailed()
        openid = code[len(DEV_CODE_PREFIX) :]
        if not 1 <= len(openid) <= 64:
            raise InvalidInput("开发登录码格式应为 dev:<openid>", code="dev_code_invalid")
        return openid
    if not settings.wechat_appid or not settings.wechat_secret:
        raise ServiceUnavailable("微信登录暂未开通，请稍后再试")
    try:
        async with httpx.AsyncClient(base_url=settings.wechat_base_url, timeout=5.0) as client:
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
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("wechat_unreachable", error=repr(exc))
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后再试") from exc
    errcode = int(data.get("errcode") or 0)
    if errcode == 0 and data.get("openid"):
        return str(data["openid"])
    log.info("wechat_login_refused", errcode=errcode)
    if errcode in (-1, 45011):
        raise ServiceUnavailable("微信服务繁忙，请稍后再试")
    raise WechatLoginFailed()


def citizen_token(settings: IntakeSettings, openid: str) -> str:
    return issue_token(
        settings,
        Principal(subject=openid, role=Role.CITIZEN),
        audience=Audience.CITIZEN,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
