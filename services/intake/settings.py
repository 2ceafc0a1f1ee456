from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELIEF_INTAKE_DATABASE_URL", "RELIEF_DATABASE_URL"),
    )
    port: int = Field(default=8001, validation_alias=AliasChoices("RELIEF_INTAKE_PORT"))

    access_token_ttl_seconds: int = Field(default=2 * 3600, ge=60)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    # WeChat jscode2session (https://developers.weixin.qq.com): base URL configurable for tests.
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_timeout_seconds: float = 5.0
    # The route to a department counts as delivered only when case.opened comes back.
    route_ack_timeout_seconds: int = 120

    # Abuse limits ("N/second|minute|hour|day"), counted in Redis.
    rate_login_per_ip: str = "30/minute"
    rate_login_per_user: str = "10/minute"
    rate_submit_per_user: str = "10/hour"
    rate_submit_per_ip: str = "120/hour"
    rate_bind_per_user: str = "10/hour"
    rate_upload_per_user: str = "60/hour"
    # Behind a reverse proxy that sets X-Forwarded-For, take the client address from it.
    trust_forwarded_for: bool = False

    # Attachments (photos, PDFs of evidence).
    object_store_dir: Path | None = None  # default: <RELIEF_HOME>/objects
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    attachments_per_application: int = Field(default=20, ge=1)

    def object_store_path(self) -> Path:
        return self.object_store_dir or self.home / "objects"


@cache
def get_settings() -> IntakeSettings:
    return IntakeSettings()
