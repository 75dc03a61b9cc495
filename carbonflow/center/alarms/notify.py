"""Alarm notifications: a durable queue (``alarm_notifications``) drained by a worker, never by metering.

The engine only *queues* a notification (one row per channel); :class:`Notifier` sends what is due in
its own thread, each attempt with a short timeout.  A failed attempt is retried with exponential
back-off (``backoff_s`` doubling up to ``backoff_max_s``) until ``max_attempts``, then marked ``failed``
with its last error — all of it visible in ``GET /api/v1/alarm-notifications``.  A mail server or
webhook receiver that is down therefore delays notifications and never metering.

Channels: ``webhook`` (HTTP POST of ``{"event", "alarm"}`` as JSON with httpx; any 2xx is success) and
``email`` (SMTP with the standard library; optional STARTTLS and login).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from carbonflow.center.store import Store
from carbonflow.center.store import alarms as alarm_store

log = logging.getLogger(__name__)


class Channel(Protocol):
    def send(self, event: str, alarm: Mapping[str, Any]) -> None: ...


@dataclass
class WebhookChannel:
    url: str
    timeout_s: float = 5.0

    def send(self, event: str, alarm: Mapping[str, Any]) -> None:
        response = httpx.post(self.url, json={"event": event, "alarm": dict(alarm)}, timeout=self.timeout_s)
        response.raise_for_status()


@dataclass
class EmailChannel:
    host: str
    recipients: list[str]
    port: int = 25
    sender: str = "carbonflow@localhost"
    starttls: bool = False
    user: str | None = None
    password: str | None = None
    timeout_s: float = 10.0

    def send(self, event: str, alarm: Mapping[str, Any]) -> None:
        message = EmailMessage()
        subject = alarm.get("subject") or {}
        message["Subject"] = (
            f"[carbonflow] {alarm.get('severity', '')} alarm {event}: {alarm.get('rule')} "
            f"{subject.get('kind', '')} {subject.get('id', '')}"
        )
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        lines = [
            f"{alarm.get('message', '')}",
            "",
            f"alarm {alarm.get('id')}  state {alarm.get('state')}  severity {alarm.get('severity')}",
            f"raised at {alarm.get('raised_at')}"
            + (f", cleared at {alarm['cleared_at']}" if alarm.get("cleared_at") else ""),
        ]
        if alarm.get("image"):
            lines.append(f"site image: {alarm['image'].get('url')}")
        message.set_content("\n".join(lines) + "\n")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)


def channels_from_settings(settings: Any) -> dict[str, Channel]:
    """The channels the center settings configure (``CARBONFLOW_ALARM_*``)."""
    channels: dict[str, Channel] = {}
    if getattr(settings, "alarm_webhook_url", None):
        channels["webhook"] = WebhookChannel(settings.alarm_webhook_url)
    recipients = [
        r.strip() for r in (getattr(settings, "alarm_email_to", None) or "").split(",") if r.strip()
    ]
    if getattr(settings, "alarm_smtp_host", None) and recipients:
        channels["email"] = EmailChannel(
            settings.alarm_smtp_host,
            recipients,
            port=settings.alarm_smtp_port,
            sender=settings.alarm_email_from,
            starttls=settings.alarm_smtp_starttls,
            user=settings.alarm_smtp_user,
            password=settings.alarm_smtp_password,
        )
    return channels


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        max_attempts: int = 5,
        backoff_s: float = 5.0,
        backoff_max_s: float = 300.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock or (lambda: datetime.now(UTC))

    def send_due(self, now: datetime | None = None) -> SendReport:
        """One round: every notification due now, each tried once."""
        now = now or self.clock()
        report = SendReport()
        for item in alarm_store.due_notifications(self.store, now):
            attempts = item["attempts"] + 1
            channel = self.channels.get(item["channel"])
            try:
                if channel is None:
                    raise LookupError(f"channel {item['channel']!r} is not configured")
                channel.send(item["event"], item["payload"])
            except Exception as error:  # any failure of the channel is recorded and retried
                text = f"{type(error).__name__}: {error}".splitlines()[0][:500]
                report.errors.append(text)
                if attempts >= self.max_attempts:
                    report.failed += 1
                    alarm_store.notification_outcome(
                        self.store, item["id"], status="failed", attempts=attempts, error=text
                    )
                    log.warning("alarm notification %s via %s failed: %s", item["id"], item["channel"], text)
                else:
                    report.retried += 1
                    delay = min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s)
                    alarm_store.notification_outcome(
                        self.store, item["id"], status="queued", attempts=attempts, error=text,
                        next_attempt_at=now + timedelta(seconds=delay),
                    )  # fmt: skip
                continue
            report.sent += 1
            alarm_store.notification_outcome(self.store, item["id"], status="sent", attempts=attempts)
        return report

    PERIOD_S = 1.0  # how soon a queued notification goes out
    # without a channel nothing can be sent, and the engine queues nothing: what is looked for is only a
    # notification queued while a channel was configured, to be marked failed — a query a second on every
    # center of a cascade for that cost them a share of their CPU (issue 16)
    PERIOD_WITHOUT_CHANNELS_S = 60.0

    @property
    def period_s(self) -> float:
        return self.PERIOD_S if self.channels else self.PERIOD_WITHOUT_CHANNELS_S

    async def run(self, period_s: float | None = None) -> None:
        while True:
            try:
                await asyncio.to_thread(self.send_due)
            except Exception:  # the store may be down for a moment: the next round retries
                log.exception("alarm notifications")
            await asyncio.sleep(self.period_s if period_s is None else period_s)
