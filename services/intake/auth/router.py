from __future__ import annotations

from fastapi import APIRouter

from services.intake.auth import service
from services.intake.auth.dependencies import Cipher, ClientIp, Limiter, Settings
from services.intake.auth.schemas import RefreshIn, TokenOut, WechatLogin
from shared.db import DbSession

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/wechat",
    summary="微信小程序登录",
    description="用 wx.login 得到的 code 换取访问令牌和刷新令牌。开发环境可用 `dev:<openid>`。",
)
async def wechat_login(
    body: WechatLogin,
    session: DbSession,
    settings: Settings,
    cipher: Cipher,
    limiter: Limiter,
    client_ip: ClientIp,
) -> TokenOut:
    await limiter.hit(settings.rate_login_per_ip, "login-ip", client_ip)
    return await service.login(session, settings, cipher, limiter, body.code)


@router.post("/refresh", summary="刷新访问令牌", description="刷新令牌只能用一次，每次换发新的。")
async def refresh(
    body: RefreshIn,
    session: DbSession,
    settings: Settings,
    limiter: Limiter,
    client_ip: ClientIp,
) -> TokenOut:
    await limiter.hit(settings.rate_login_per_ip, "login-ip", client_ip)
    return await service.refresh(session, settings, body.refresh_token)
