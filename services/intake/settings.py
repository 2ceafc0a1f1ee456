from __future__ import annotations

from functools import cache

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELIEF_INTAKE_DATABASE_URL", "RELIEF_DATABASE_URL"),
    )
    port: int = Field(default=8001, validation_alias=AliasChoices("RELIEF_INTAKE_PORT"))

    access_token_ttl_seconds: int = 2 * 3600
    # WeChat jscode2session (https://developers.weixin.qq.com): base URL configurable for tests.
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = ""
    wechat_secret: str = ""
    # The route to a department counts as delivered only when case.opened comes back.
    route_ack_timeout_seconds: int = 120


@cache
def get_settings() -> IntakeSettings:
    return IntakeSettings()
