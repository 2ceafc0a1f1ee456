"""Token checks, and that remembering a verified token changes none of their answers."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from shared.auth import Audience, Principal, Role, decode_token, issue_token
from shared.errors import Unauthorized
from shared.settings import ServiceSettings

SETTINGS = ServiceSettings(jwt_secret=SecretStr("k" * 40))
CLERK = Principal(subject="u-1", role=Role.CLERK, department="civil", region="530102")


def _refused(code: str, settings: ServiceSettings, token: str, audience: Audience) -> None:
    with pytest.raises(Unauthorized) as refused:
        decode_token(settings, token, audience=audience)
    assert refused.value.code == code


def test_a_token_reads_the_same_every_time() -> None:
    token = issue_token(SETTINGS, CLERK, audience=Audience.STAFF, ttl_seconds=60)
    assert decode_token(SETTINGS, token, audience=Audience.STAFF) == CLERK
    assert decode_token(SETTINGS, token, audience=Audience.STAFF) == CLERK


def test_a_token_verified_once_still_expires() -> None:
    time.sleep(1.01 - time.time() % 1)  # at the start of a second: read well before expiry
    token = issue_token(SETTINGS, CLERK, audience=Audience.STAFF, ttl_seconds=1)
    assert decode_token(SETTINGS, token, audience=Audience.STAFF) == CLERK
    time.sleep(max(0.0, int(time.time()) + 1.05 - time.time()))  # past its expiry
    _refused("token_expired", SETTINGS, token, Audience.STAFF)


def test_a_token_verified_once_is_still_refused_elsewhere() -> None:
    token = issue_token(SETTINGS, CLERK, audience=Audience.STAFF, ttl_seconds=60)
    assert decode_token(SETTINGS, token, audience=Audience.STAFF) == CLERK
    _refused("token_invalid", SETTINGS, token, Audience.CITIZEN)
    other_key = ServiceSettings(jwt_secret=SecretStr("x" * 40))
    _refused("token_invalid", other_key, token, Audience.STAFF)
    other_issuer = ServiceSettings(jwt_secret=SecretStr("k" * 40), jwt_issuer="elsewhere")
    _refused("token_invalid", other_issuer, token, Audience.STAFF)
    head, payload, signature = token.split(".")
    forged = ("B" if signature[0] == "A" else "A") + signature[1:]
    _refused("token_invalid", SETTINGS, f"{head}.{payload}.{forged}", Audience.STAFF)
