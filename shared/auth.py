"""Tokens and principals. Each service decides which roles it admits.

Citizen tokens are issued by intake, staff tokens by verification; every service verifies
them with the same key. The audience claim keeps a citizen token out of staff endpoints.
"""

from __future__ import annotations

import enum
import functools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from shared.errors import Unauthorized
from shared.settings import ServiceSettings

ALGORITHM = "HS256"


class Role(enum.StrEnum):
    CITIZEN = "citizen"
    GRID_WORKER = "grid_worker"
    CLERK = "clerk"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Audience(enum.StrEnum):
    CITIZEN = "relief:citizen"
    STAFF = "relief:staff"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    department: str | None = None
    region: str | None = None
    token_version: int = 0


def issue_token(
    settings: ServiceSettings,
    principal: Principal,
    *,
    audience: Audience,
    ttl_seconds: int,
    token_type: str = "access",
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": audience.value,
        "sub": principal.subject,
        "role": principal.role.value,
        "typ": token_type,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "ver": principal.token_version,
    }
    if principal.department is not None:
        claims["dept"] = principal.department
    if principal.region is not None:
        claims["region"] = principal.region
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


@functools.lru_cache(maxsize=4096)
def _verified_claims(token: str, secret: str, issuer: str, audience: str) -> dict[str, Any]:
    """The claims of a token whose signature, audience and issuer checked out. Cached: a
    clerk or a citizen sends the same token with every request, and verifying it again
    gives the same answer, except for the time claims, which the caller checks each time.
    A token that fails raises, and failures are not cached."""
    claims: dict[str, Any] = jwt.decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "sub", "aud", "iss"]},
    )
    return claims


def decode_token(
    settings: ServiceSettings, token: str, *, audience: Audience, token_type: str = "access"
) -> Principal:
    try:
        claims = _verified_claims(
            token, settings.jwt_secret.get_secret_value(), settings.jwt_issuer, audience.value
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("登录已过期，请重新登录", code="token_expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("登录凭证无效，请重新登录", code="token_invalid") from exc
    if int(claims["exp"]) <= time.time():  # verified earlier, expired since
        raise Unauthorized("登录已过期，请重新登录", code="token_expired")
    if claims.get("typ") != token_type:
        raise Unauthorized("登录凭证无效，请重新登录", code="token_invalid")
    try:
        role = Role(claims["role"])
    except (KeyError, ValueError) as exc:
        raise Unauthorized("登录凭证无效，请重新登录", code="token_invalid") from exc
    return Principal(
        subject=str(claims["sub"]),
        role=role,
        department=claims.get("dept"),
        region=claims.get("region"),
        token_version=int(claims.get("ver", 0)),
    )


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("登录凭证格式有误", code="token_invalid")
    return token.strip()
