from __future__ import annotations

from fastapi import APIRouter

from services.intake.auth import service
from services.intake.auth.dependencies import Settings
from services.intake.auth.schemas import TokenOut, WechatLogin

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/wechat", summary="微信小程序登录")
async def wechat_login(body: WechatLogin, settings: Settings) -> TokenOut:
    openid = await service.exchange_code(settings, body.code)
    return TokenOut(
        access_token=service.citizen_token(settings, openid),
        expires_in=settings.access_token_ttl_seconds,
    )
