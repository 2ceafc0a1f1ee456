"""The two ways to reach a citizen: a WeChat subscribe message (访问令牌 cached in Redis),
and an SMS gateway speaking JSON over HTTP. Each answers a `SendResult`; none raises for a
provider's refusal or outage."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis

from services.notify.settings import NotifySettings

log = structlog.get_logger(__name__)

# WeChat's answers that mean "this will not work for this user/message", not "try later".
_WECHAT_REFUSALS = {
    43101,  # the user has not subscribed (or refused) this template
    40003,  # invalid openid
    47003,  # template data invalid
    40037,  # invalid template id
    43104,  # appid and openid do not match
}
_WECHAT_TOKEN_EXPIRED = {40001, 40014, 42001}
# The SMS gateway's answers that will not change by retrying.
_SMS_REFUSALS = {"INVALID_PHONE", "PHONE_BLACKLISTED", "TEMPLATE_INVALID"}


@dataclass(frozen=True)
class SendResult:
    ok: bool
    code: str | None = None
    message: str | None = None
    provider_message_id: str | None = None
    permanent: bool = False  # retrying the same channel will not help


class WechatChannel:
    name = "wechat"

    def __init__(self, http: httpx.AsyncClient, redis: Redis, settings: NotifySettings) -> None:
        self._http = http
        self._redis = redis
        self._settings = settings
        self._token_key = f"relief:wechat:access_token:{settings.wechat_appid}"
        self._fetching = asyncio.Lock()

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one; `stale` is a token WeChat just refused, to be
        replaced. The sends of a batch run at once: one of them fetches, the rest wait
        for its token instead of each asking WeChat."""
        cached = await self._redis.get(self._token_key)
        if cached and cached != stale:
            return str(cached)
        async with self._fetching:
            cached = await self._redis.get(self._token_key)
            if cached and cached != stale:
                return str(cached)
            return await self._fetch_token(force=stale is not None)

    async def _fetch_token(self, *, force: bool) -> str:
        response = await self._http.post(
            f"{self._settings.wechat_base_url}/cgi-bin/stable_token",
            json={
                "grant_type": "client_credential",
                "appid": self._settings.wechat_appid,
                "secret": self._settings.wechat_secret.get_secret_value(),
                "force_refresh": force,
            },
        )
        data = response.json()
        token = data.get("access_token")
        if not token:
            raise RuntimeError(f"stable_token errcode {data.get('errcode')}: {data.get('errmsg')}")
        # Refresh a little before WeChat expires it.
        ttl = max(60, int(data.get("expires_in", 7200)) - 300)
        await self._redis.set(self._token_key, token, ex=ttl)
        return str(token)

    async def send(self, openid: str, kind: str, data: dict[str, Any]) -> SendResult:
        template_id = self._settings.wechat_templates.get(kind)
        if not template_id:
            return SendResult(False, "no_template", f"no template for {kind}", permanent=True)
        body = {
            "touser": openid,
            "template_id": template_id,
            "page": self._settings.wechat_page,
            "data": data,
            "miniprogram_state": self._settings.wechat_miniprogram_state,
            "lang": "zh_CN",
        }
        try:
            token = await self._access_token()
            answer = await self._post_message(body, token)
            if int(answer.get("errcode", 0)) in _WECHAT_TOKEN_EXPIRED:
                answer = await self._post_message(body, await self._access_token(stale=token))
        except (httpx.HTTPError, ValueError, RuntimeError) as exc:
            return SendResult(False, "unreachable", repr(exc)[:300])
        errcode = int(answer.get("errcode", 0))
        if errcode == 0:
            return SendResult(True, provider_message_id=str(answer.get("msgid", "")) or None)
        return SendResult(
            False,
            str(errcode),
            str(answer.get("errmsg", "")),
            permanent=errcode in _WECHAT_REFUSALS,
        )

    async def _post_message(self, body: dict[str, Any], token: str) -> dict[str, Any]:
        response = await self._http.post(
            f"{self._settings.wechat_base_url}/cgi-bin/message/subscribe/send",
            params={"access_token": token},
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code >= 500:
            raise ValueError(f"HTTP {response.status_code}")
        answer = response.json()
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
        return answer


class SmsChannel:
    """A JSON SMS gateway: POST {base}/sms/send with X-Api-Key; answers
    {"code": "OK", "message_id": …} or {"code": <error>, "message": …}."""

    name = "sms"

    def __init__(self, http: httpx.AsyncClient, settings: NotifySettings) -> None:
        self._http = http
        self._settings = settings

    async def send(self, phone: str, kind: str, text: str) -> SendResult:
        try:
            response = await self._http.post(
                f"{self._settings.sms_base_url}/sms/send",
                json={
                    "phone": phone,
                    "sign_name": self._settings.sms_sign_name,
                    "template_code": self._settings.sms_templates.get(kind, kind),
                    "text": text,
                },
                headers={"X-Api-Key": self._settings.sms_api_key.get_secret_value()},
            )
            answer = response.json() if response.status_code < 500 else {}
        except (httpx.HTTPError, ValueError) as exc:
            return SendResult(False, "unreachable", repr(exc)[:300])
        if not isinstance(answer, dict):
            return SendResult(False, f"http_{response.status_code}", "bad answer")
        code = str(answer.get("code") or f"http_{response.status_code}")
        if code == "OK":
            return SendResult(True, provider_message_id=str(answer.get("message_id") or "") or None)
        return SendResult(
            False, code, str(answer.get("message", "")), permanent=code in _SMS_REFUSALS
        )


class ConsoleChannel:
    """Development only: no provider configured, so the text goes to the log."""

    name = "console"

    async def send(self, kind: str, text: str) -> SendResult:
        log.info("notification_console", kind=kind, text=text)
        return SendResult(True, provider_message_id="console")
