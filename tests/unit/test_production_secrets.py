"""No default secret is accepted outside development, by any service."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.verification.settings import VerificationSettings
from shared.settings import ServiceSettings

SETTINGS = [ServiceSettings, IntakeSettings, VerificationSettings, NotifySettings]
REAL: dict[str, Any] = {
    "jwt_secret": "j" * 40,
    "pii_hash_key": "h" * 40,
    "pii_keys": {"k1": base64.b64encode(os.urandom(32)).decode()},
    "pii_active_key_id": "k1",
}


@pytest.fixture(autouse=True)
def _no_relief_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RELIEF_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("settings_class", SETTINGS)
@pytest.mark.parametrize("placeholder", ["jwt_secret", "pii_hash_key", "pii_keys"])
def test_each_placeholder_is_refused_in_production(
    settings_class: type[ServiceSettings], placeholder: str
) -> None:
    values = {k: v for k, v in REAL.items() if k != placeholder}
    if placeholder == "pii_keys":
        values.pop("pii_active_key_id")
    with pytest.raises(ValidationError, match="RELIEF_"):
        settings_class(env="prod", **values)


@pytest.mark.parametrize("settings_class", SETTINGS)
def test_real_secrets_are_accepted_in_production(settings_class: type[ServiceSettings]) -> None:
    settings = settings_class(env="prod", **REAL)
    assert settings.jwt_secret.get_secret_value() == "j" * 40
    assert not settings.allows_dev_login


@pytest.mark.parametrize("settings_class", SETTINGS)
def test_development_works_with_no_configuration(settings_class: type[ServiceSettings]) -> None:
    assert settings_class().is_dev
