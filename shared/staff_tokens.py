"""Staff token revocation shared through Redis: verification owns the accounts and publishes
each one's token version and disabled flag; other services (notify) refuse a staff token
that is older than the account's version or belongs to a disabled account.

Verification writes the hash on every account change and rewrites it whole every minute, so
a Redis that lost its data is correct again within a minute."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from shared.auth import Principal
from shared.errors import Unauthorized

KEY = "relief:staff:token_versions"
DISABLED = -1


def _value(token_version: int, disabled: bool) -> str:
    return str(DISABLED if disabled else token_version)


async def publish(redis: Redis, user_id: str, token_version: int, disabled: bool) -> None:
    await redis.hset(KEY, user_id, _value(token_version, disabled))


async def publish_all(redis: Redis, accounts: Iterable[tuple[str, int, bool]]) -> int:
    mapping = {user_id: _value(version, disabled) for user_id, version, disabled in accounts}
    if mapping:
        await redis.hset(KEY, mapping=mapping)  # type: ignore[arg-type]
    return len(mapping)


async def check(redis: Redis, principal: Principal) -> None:
    """Refuse a token of a disabled account or one issued before the account's last reset."""
    stored = await redis.hget(KEY, principal.subject)
    if stored is None:
        return  # not yet synchronised: the signature and expiry still hold
    current = int(stored)
    if current == DISABLED:
        raise Unauthorized("账号已停用，请联系管理员", code="account_disabled")
    if principal.token_version < current:
        raise Unauthorized("登录已失效，请重新登录", code="token_revoked")
