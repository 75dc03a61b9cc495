"""Alarms of the monitoring center: rules as data (``rules``), checks as plain functions (``checks``),
the lifecycle engine fed by metering and device status (``engine``) and notifications (``notify``).
See docs/alarms.md."""

from carbonflow.center.alarms.engine import AlarmEngine, Evaluation
from carbonflow.center.alarms.notify import EmailChannel, Notifier, WebhookChannel, channels_from_settings
from carbonflow.center.alarms.rules import AlarmRule, RuleError, default_rules, parse_rules

__all__ = [
    "AlarmEngine",
    "AlarmRule",
    "EmailChannel",
    "Evaluation",
    "Notifier",
    "RuleError",
    "WebhookChannel",
    "channels_from_settings",
    "default_rules",
    "parse_rules",
]
