"""Settings common to every service; each service extends `ServiceSettings`.

Everything comes from the environment with the `RELIEF_` prefix. Secrets have development
placeholders so `make run` works with no configuration, and those placeholders are refused
outside development and tests.
"""

from __future__ import annotations

import base64
import enum
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PLACEHOLDER = "dev-only-placeholder-not-a-secret-0000"
_DEV_PII_KEY = base64.b64encode(b"dev-only-pii-key-not-a-secret!!!").decode()


class Environment(enum.StrEnum):
    DEV = "dev"
    TEST = "test"
    PROD = "prod"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELIEF_", extra="ignore", frozen=True)

    env: Environment = Environment.DEV
    # Where embedded PostgreSQL/Redis keep their state when no URLs are given.
    home: Path = Path(".relief")
    database_url: str | None = None
    redis_url: str | None = None
    host: str = "127.0.0.1"
    # Larger request bodies are refused with 413 before they are read (uploads included).
    max_request_bytes: int = Field(default=12 * 1024 * 1024, ge=1024)

    # 15 kept open, none in overflow: SQLAlchemy closes an overflow connection as soon as it
    # is returned, so a process busy above its pool size opened and closed backends all the
    # time (60-160 new ones in a 20 s wrk run at 32 connections with 10 + 5; 1 with 15 + 0),
    # each a TCP connect, an SSL attempt, a backend fork and type introspection. The same
    # ceiling of 15 connections per process as before.
    db_pool_size: int = Field(default=15, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    # A request waiting this long for a pooled connection is answered 503 + Retry-After.
    # Admission control (below) keeps the wait for a connection short in normal overload,
    # so a longer one means the database itself is slow: tell the client to come back
    # rather than hold its connection open.
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    # A pooled connection idle longer than this is pinged before use (and replaced if
    # dead); one in steady use is not: a ping costs three round trips (shared.db).
    db_ping_after_idle_seconds: float = Field(default=5.0, ge=0)

    # Requests one process works on at once (health, readiness and /metrics excepted); more
    # wait up to `admission_wait_ms` for a slot, at most as many again, and the rest are
    # answered 503 + Retry-After at once instead of piling up in front of the pool. 32 is
    # about twice the default pool (15): the pool stays busy while one request
    # ends and the next starts, yet at most ~17 wait for a connection, each for about one
    # request's database time, far below the pool timeout. Raise it with the pool size.
    max_inflight_requests: int = Field(default=32, ge=1, le=10_000)
    # How long a request over the limit may wait for a slot before it is refused: long
    # enough to ride out a burst, short enough that the answer is still quick.
    admission_wait_ms: int = Field(default=200, ge=0, le=10_000)

    jwt_secret: SecretStr = SecretStr(DEV_PLACEHOLDER)
    jwt_issuer: str = "relief-platform"
    # JSON object: key id -> base64 of a 32-byte AES key. The active id encrypts; all decrypt.
    pii_keys: dict[str, str] = Field(default_factory=lambda: {"dev1": _DEV_PII_KEY})
    pii_active_key_id: str = "dev1"
    pii_hash_key: SecretStr = SecretStr(DEV_PLACEHOLDER)

    # Stable consumer names: a restarted worker with the same id picks up its own pending
    # messages first. Give each worker process of a service its own id.
    worker_id: str = "1"
    consumer_claim_idle_ms: int = Field(default=30_000, ge=100)
    consumer_max_deliveries: int = Field(default=5, ge=1)

    log_json: bool | None = None  # default: JSON outside development
    log_level: str = "INFO"

    @property
    def is_dev(self) -> bool:
        return self.env is Environment.DEV

    @property
    def allows_dev_login(self) -> bool:
        """Dev login codes (`dev:<openid>`) work in development and tests, never in prod."""
        return self.env in (Environment.DEV, Environment.TEST)

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Self:
        if self.env is Environment.PROD:
            placeholders = [
                name
                for name, value in (
                    ("RELIEF_JWT_SECRET", self.jwt_secret.get_secret_value()),
                    ("RELIEF_PII_HASH_KEY", self.pii_hash_key.get_secret_value()),
                )
                if value == DEV_PLACEHOLDER or len(value) < 32
            ]
            if _DEV_PII_KEY in self.pii_keys.values():
                placeholders.append("RELIEF_PII_KEYS")
            if placeholders:
                raise ValueError(
                    "placeholder or short secrets are refused outside dev: "
                    + ", ".join(placeholders)
                )
        if self.pii_active_key_id not in self.pii_keys:
            raise ValueError("RELIEF_PII_ACTIVE_KEY_ID must name a key in RELIEF_PII_KEYS")
        return self

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "no database URL: set RELIEF_DATABASE_URL, or start through `relief` which "
                "provides the embedded PostgreSQL"
            )
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "no Redis URL: set RELIEF_REDIS_URL, or start through `relief` which "
                "provides the embedded Redis"
            )
        return self.redis_url

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print: secrets are masked by pydantic's SecretStr."""
        return self.model_dump(exclude={"pii_keys"})
