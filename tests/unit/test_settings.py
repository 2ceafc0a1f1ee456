"""Tests for the common service settings in shared.settings."""

from __future__ import annotations

import base64
import json
import os

import pytest
from pydantic import ValidationError

from shared.settings import DEV_PLACEHOLDER, Environment, ServiceSettings

SECRET_40 = "s" * 20 + "t" * 20
HASH_KEY_40 = "h" * 20 + "k" * 20


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RELIEF_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pii_keys() -> dict[str, str]:
    return {"k1": base64.b64encode(os.urandom(32)).decode()}


def test_dev_defaults_validate() -> None:
    settings = ServiceSettings()
    assert settings.env is Environment.DEV
    assert settings.is_dev
    assert settings.pii_active_key_id in settings.pii_keys


def test_prod_with_defaults_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        ServiceSettings(env="prod")
    message = str(info.value)
    assert "RELIEF_JWT_SECRET" in message
    assert "RELIEF_PII_HASH_KEY" in message
    assert "RELIEF_PII_KEYS" in message


def test_prod_with_real_secrets_validates(pii_keys: dict[str, str]) -> None:
    settings = ServiceSettings(
        env="prod",
        jwt_secret=SECRET_40,
        pii_hash_key=HASH_KEY_40,
        pii_keys=pii_keys,
        pii_active_key_id="k1",
    )
    assert settings.env is Environment.PROD
    assert not settings.is_dev
    assert settings.jwt_secret.get_secret_value() == SECRET_40
    assert settings.pii_hash_key.get_secret_value() == HASH_KEY_40


def test_prod_refuses_a_short_jwt_secret(pii_keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as info:
        ServiceSettings(
            env="prod",
            jwt_secret="x" * 31,
            pii_hash_key=HASH_KEY_40,
            pii_keys=pii_keys,
            pii_active_key_id="k1",
        )
    message = str(info.value)
    assert "RELIEF_JWT_SECRET" in message
    assert "RELIEF_PII_HASH_KEY" not in message
    assert "RELIEF_PII_KEYS" not in message


def test_prod_accepts_a_32_char_secret(pii_keys: dict[str, str]) -> None:
    settings = ServiceSettings(
        env="prod",
        jwt_secret="x" * 32,
        pii_hash_key="y" * 32,
        pii_keys=pii_keys,
        pii_active_key_id="k1",
    )
    assert settings.env is Environment.PROD


def test_prod_refuses_the_placeholder_even_though_it_is_long(pii_keys: dict[str, str]) -> None:
    assert len(DEV_PLACEHOLDER) >= 32
    with pytest.raises(ValidationError) as info:
        ServiceSettings(
            env="prod",
            jwt_secret=SECRET_40,
            pii_hash_key=DEV_PLACEHOLDER,
            pii_keys=pii_keys,
            pii_active_key_id="k1",
        )
    message = str(info.value)
    assert "RELIEF_PII_HASH_KEY" in message
    assert "RELIEF_JWT_SECRET" not in message


def test_prod_refuses_the_dev_pii_key(pii_keys: dict[str, str]) -> None:
    dev_key = ServiceSettings().pii_keys["dev1"]
    with pytest.raises(ValidationError) as info:
        ServiceSettings(
            env="prod",
            jwt_secret=SECRET_40,
            pii_hash_key=HASH_KEY_40,
            pii_keys={**pii_keys, "dev1": dev_key},
            pii_active_key_id="k1",
        )
    message = str(info.value)
    assert "RELIEF_PII_KEYS" in message
    assert "RELIEF_JWT_SECRET" not in message


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_active_key_must_be_one_of_the_keys(env: str, pii_keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="RELIEF_PII_ACTIVE_KEY_ID"):
        ServiceSettings(
            env=env,
            jwt_secret=SECRET_40,
            pii_hash_key=HASH_KEY_40,
            pii_keys=pii_keys,
            pii_active_key_id="k2",
        )


def test_dev_default_keys_with_another_active_id_are_refused() -> None:
    with pytest.raises(ValidationError, match="RELIEF_PII_ACTIVE_KEY_ID"):
        ServiceSettings(pii_active_key_id="missing")


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(env="staging")


def test_env_var_selects_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELIEF_ENV", "prod")
    with pytest.raises(ValidationError, match="RELIEF_JWT_SECRET"):
        ServiceSettings()


def test_prod_secrets_from_env_vars(
    monkeypatch: pytest.MonkeyPatch, pii_keys: dict[str, str]
) -> None:
    monkeypatch.setenv("RELIEF_ENV", "prod")
    monkeypatch.setenv("RELIEF_JWT_SECRET", SECRET_40)
    monkeypatch.setenv("RELIEF_PII_HASH_KEY", HASH_KEY_40)
    monkeypatch.setenv("RELIEF_PII_KEYS", json.dumps(pii_keys))
    monkeypatch.setenv("RELIEF_PII_ACTIVE_KEY_ID", "k1")
    settings = ServiceSettings()
    assert settings.env is Environment.PROD
    assert settings.pii_keys == pii_keys
    assert settings.pii_active_key_id == "k1"
    assert settings.jwt_secret.get_secret_value() == SECRET_40


def test_public_dict_hides_secrets() -> None:
    settings = ServiceSettings(jwt_secret=SECRET_40, pii_hash_key=HASH_KEY_40)
    public = settings.public_dict()
    assert "pii_keys" not in public
    text = repr(public)
    assert SECRET_40 not in text
    assert HASH_KEY_40 not in text
    assert public["env"] == Environment.DEV


def test_require_urls() -> None:
    settings = ServiceSettings()
    with pytest.raises(RuntimeError, match="RELIEF_DATABASE_URL"):
        settings.require_database_url()
    with pytest.raises(RuntimeError, match="RELIEF_REDIS_URL"):
        settings.require_redis_url()
    configured = ServiceSettings(database_url="postgresql+asyncpg://db/x", redis_url="redis://r")
    assert configured.require_database_url() == "postgresql+asyncpg://db/x"
    assert configured.require_redis_url() == "redis://r"
