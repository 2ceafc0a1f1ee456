from __future__ import annotations

from functools import cache

from pydantic import AliasChoices, Field

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELIEF_NOTIFY_DATABASE_URL", "RELIEF_DATABASE_URL"),
    )
    port: int = Field(default=8003, validation_alias=AliasChoices("RELIEF_NOTIFY_PORT"))
    # Dates in reports are local dates of the province.
    report_timezone: str = "Asia/Shanghai"


@cache
def get_settings() -> NotifySettings:
    return NotifySettings()
