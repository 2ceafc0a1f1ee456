from __future__ import annotations

from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, field_validator, model_validator

from shared.catalog import catalog
from shared.settings import Environment, ServiceSettings

SECONDS_PER_DAY = 86_400


class VerificationSettings(ServiceSettings):
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RELIEF_VERIFICATION_DATABASE_URL", "RELIEF_DATABASE_URL"),
    )
    port: int = Field(default=8002, validation_alias=AliasChoices("RELIEF_VERIFICATION_PORT"))
    # Which departments this deployment serves: empty means all of the catalog's.
    departments: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("RELIEF_VERIFICATION_DEPARTMENTS")
    )
    access_token_ttl_seconds: int = 8 * 3600
    # How often the worker looks for cases that went past their deadline.
    overdue_sweep_seconds: float = Field(default=60.0, gt=0)
    # How often every account's token state is copied to Redis for the other services.
    staff_token_sync_seconds: float = Field(default=5.0, gt=0)
    object_store_dir: Path | None = None  # default: <RELIEF_HOME>/objects, shared with intake
    # How long one day of a public notice (公示) lasts. Only `relief replay` and load tests
    # compress it (e.g. 1 s), to walk a history of village reviews in minutes; production
    # refuses any other value than a real day.
    notice_day_seconds: int = Field(default=SECONDS_PER_DAY, ge=1)

    @property
    def notice_day(self) -> timedelta:
        return timedelta(seconds=self.notice_day_seconds)

    def object_store_path(self) -> Path:
        return self.object_store_dir or self.home / "objects"

    @field_validator("departments")
    @classmethod
    def _known_departments(cls, value: list[str]) -> list[str]:
        unknown = set(value) - set(catalog().department_codes())
        if unknown:
            raise ValueError(f"unknown departments: {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _real_days_in_production(self) -> Self:
        if self.env is Environment.PROD and self.notice_day_seconds != SECONDS_PER_DAY:
            raise ValueError(
                f"RELIEF_NOTICE_DAY_SECONDS compresses time and is refused in production "
                f"(must be {SECONDS_PER_DAY})"
            )
        return self

    def served_departments(self) -> list[str]:
        return self.departments or catalog().department_codes()


@cache
def get_settings() -> VerificationSettings:
    return VerificationSettings()
