from __future__ import annotations

from functools import cache

from pydantic import AliasChoices, Field, SecretStr

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELIEF_NOTIFY_DATABASE_URL", "RELIEF_DATABASE_URL"),
    )
    port: int = Field(default=8003, validation_alias=AliasChoices("RELIEF_NOTIFY_PORT"))
    # Dates in reports are local dates of the province.
    report_timezone: str = "Asia/Shanghai"

    # WeChat subscribe messages (订阅消息): stable access token, then message/subscribe/send.
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = ""
    wechat_secret: SecretStr = SecretStr("")
    # Template id per kind: accepted, info_requested, decided, transferred (JSON object).
    wechat_templates: dict[str, str] = Field(default_factory=dict)
    wechat_page: str = "pages/applications/index"
    wechat_miniprogram_state: str = "formal"
    # SMS gateway (fallback).
    sms_base_url: str = ""
    sms_api_key: SecretStr = SecretStr("")
    sms_sign_name: str = "云南省政府救助平台"
    sms_templates: dict[str, str] = Field(default_factory=dict)
    provider_timeout_seconds: float = Field(default=5.0, gt=0)

    # Delivery: exponential backoff with jitter, then a dead-letter record.
    notify_max_attempts: int = Field(default=8, ge=1)
    notify_backoff_base_seconds: float = Field(default=5.0, gt=0)
    notify_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    sender_interval_seconds: float = Field(default=1.0, gt=0)
    # Notifications sent together, in one transaction: the most a crash can send twice.
    # All of a batch are in flight at once, so it holds its row locks for at most about
    # two provider timeouts (WeChat, then SMS), well inside the database's 30 s limit on
    # a transaction left idle.
    sender_batch_size: int = Field(default=16, ge=1, le=100)

    # 催办: remind the clerk this long before a case's deadline; sweep this often.
    reminder_before_hours: float = Field(default=72.0, gt=0)
    reminder_sweep_seconds: float = Field(default=60.0, gt=0)

    @property
    def wechat_configured(self) -> bool:
        return bool(self.wechat_appid and self.wechat_secret.get_secret_value())

    @property
    def sms_configured(self) -> bool:
        return bool(self.sms_base_url)


@cache
def get_settings() -> NotifySettings:
    return NotifySettings()
