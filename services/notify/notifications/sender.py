"""Delivers due notifications: WeChat first, SMS when WeChat cannot; every try logged;
failures retried with exponential backoff and jitter, then kept as dead letters.

A sweep takes the due notifications in batches (`sender_batch_size`): one transaction
locks a batch (FOR UPDATE SKIP LOCKED: two senders never send the same one), sends all of
it at once — a provider's latency is paid once per batch, not once per message — and
commits every result together. A sender that dies after a provider accepted a message but
before that commit sends it again on recovery: providers offer no idempotency key, so that
rare duplicate, at most a batch, is the price of never losing a message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import structlog
from cryptography.exceptions import InvalidTag
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.models import Notification, NotificationStatus
from services.notify.notifications.channels import (
    ConsoleChannel,
    SendResult,
    SmsChannel,
    WechatChannel,
)
from services.notify.notifications.repository import lock_due
from services.notify.notifications.service import backoff, log_attempt
from services.notify.settings import NotifySettings
from shared.db import now_utc, unit_of_work
from shared.pii import PiiCipher, cipher_for

log = structlog.get_logger(__name__)


@dataclass
class Channels:
    wechat: WechatChannel | None
    sms: SmsChannel | None
    console: ConsoleChannel | None

    @classmethod
    def from_settings(
        cls, settings: NotifySettings, http: httpx.AsyncClient, redis: Redis
    ) -> Channels:
        wechat = WechatChannel(http, redis, settings) if settings.wechat_configured else None
        sms = SmsChannel(http, settings) if settings.sms_configured else None
        console = ConsoleChannel() if settings.is_dev and not (wechat or sms) else None
        return cls(wechat, sms, console)


class Sender:
    def __init__(self, settings: NotifySettings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._cipher: PiiCipher = cipher_for(settings)
        # One client for the sender's life: a new one per sweep costs a TLS context (~10 ms
        # of CPU) every second, and the providers' connections are worth keeping alive.
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(timeout=self._settings.provider_timeout_seconds)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def deliver_due(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, limit: int = 200
    ) -> int:
        """Deliver up to `limit` due notifications; returns how many were handled."""
        handled = 0
        channels = Channels.from_settings(self._settings, self._client(), self._redis)
        # Only what was due when the sweep began: a retry scheduled during this sweep
        # waits for a later one, so a failing message never spins.
        cutoff = now_utc()
        size = self._settings.sender_batch_size
        while handled < limit:
            async with unit_of_work(sessionmaker) as session:
                batch = await lock_due(session, cutoff, limit=min(size, limit - handled))
                await asyncio.gather(*(self._deliver_or_defer(session, n, channels) for n in batch))
            handled += len(batch)
            if len(batch) < size:  # nothing more was due
                break
        return handled

    async def _deliver_or_defer(
        self, session: AsyncSession, notification: Notification, channels: Channels
    ) -> None:
        """Deliver one of a batch; a fault of ours (not a provider's answer, which the
        channels turn into results) counts as a failed try of this message alone, so it
        neither undoes the batch's deliveries nor holds the line forever."""
        try:
            await self._deliver(session, notification, channels)
        except Exception as exc:
            log.exception("notification_failed", notification_id=str(notification.id))
            self._failed(notification, SendResult(False, "internal_error", repr(exc)[:300]))

    async def _deliver(
        self, session: AsyncSession, notification: Notification, channels: Channels
    ) -> None:
        now = now_utc()
        delivered: str | None = None
        hopeless = True  # no channel could ever work for this message
        last: SendResult | None = None

        if channels.wechat and notification.recipient_openid and not notification.wechat_refused:
            last = await channels.wechat.send(
                notification.recipient_openid, notification.kind, notification.template_data
            )
            self._log(session, notification, "wechat", last)
            if last.ok:
                delivered = "wechat"
            elif last.permanent:
                notification.wechat_refused = True
            else:
                hopeless = False
        if delivered is None and channels.sms and notification.recipient_phone_enc:
            last = await self._send_sms(session, notification, channels.sms)
            if last.ok:
                delivered = "sms"
            elif not last.permanent:
                hopeless = False
        if delivered is None and channels.console:
            last = await channels.console.send(notification.kind, notification.text)
            self._log(session, notification, "console", last)
            delivered = "console"

        if delivered is not None:
            notification.attempts += 1
            notification.status = NotificationStatus.SENT
            notification.channel = delivered
            notification.sent_at = now
            notification.last_error = None
            return
        self._failed(notification, last, hopeless=hopeless)

    def _failed(
        self, notification: Notification, last: SendResult | None, *, hopeless: bool = False
    ) -> None:
        """Count a failed try: retried after a backoff, or dead when it cannot succeed or
        has used up its attempts."""
        notification.attempts += 1
        notification.last_error = (
            f"{last.code}: {last.message}" if last else "no channel configured"
        )[:1000]
        if hopeless or notification.attempts >= self._settings.notify_max_attempts:
            notification.status = NotificationStatus.DEAD
            log.warning(
                "notification_dead",
                notification_id=str(notification.id),
                attempts=notification.attempts,
                error=notification.last_error,
            )
            return
        notification.next_attempt_at = now_utc() + backoff(
            notification.attempts,
            base=self._settings.notify_backoff_base_seconds,
            cap=self._settings.notify_backoff_max_seconds,
        )

    async def _send_sms(
        self, session: AsyncSession, notification: Notification, sms: SmsChannel
    ) -> SendResult:
        assert notification.recipient_phone_enc is not None
        try:
            phone = self._cipher.decrypt(notification.recipient_phone_enc, purpose="phone")
        except (KeyError, InvalidTag, ValueError):
            result = SendResult(
                False, "key_unavailable", "phone cannot be decrypted", permanent=True
            )
        else:
            result = await sms.send(phone, notification.kind, notification.text)
        self._log(session, notification, "sms", result)
        return result

    @staticmethod
    def _log(
        session: AsyncSession, notification: Notification, channel: str, result: SendResult
    ) -> None:
        log_attempt(
            session,
            notification,
            channel=channel,
            ok=result.ok,
            at=now_utc(),
            error_code=result.code,
            error_message=result.message,
            provider_message_id=result.provider_message_id,
        )
