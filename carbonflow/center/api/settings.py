"""Center settings: one pydantic model, from code, a dict (TOML) or the environment (``CARBONFLOW_*``)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from carbonflow.center.store import DEFAULT_IMAGE_RETENTION_DAYS, DEFAULT_RETENTION_DAYS


class CenterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = "sqlite:///carbonflow-center.db"
    # bearer tokens accepted for user endpoints until users and roles exist (token → user name)
    api_tokens: dict[str, str] = Field(default_factory=dict)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1)
    mqtt_url: str | None = None  # e.g. mqtt://127.0.0.1:1883; None: HTTP ingest only
    mqtt_client_id: str = "carbonflow-center"
    mqtt_topic_prefix: str = "carbonflow"
    time_zone: str = "Asia/Shanghai"  # local time of the UI, of "today" and of aggregation buckets
    session_hours: float = Field(default=12.0, gt=0)  # lifetime of a login session
    cookie_secure: bool = False  # set the session cookie's Secure flag (behind HTTPS)
    live_poll_s: float = Field(default=2.0, gt=0)  # how often /api/v1/live looks for a new interval
    # site-camera images (store/images.py): files under image_dir (default: next to an SQLite database)
    image_dir: str | None = None
    image_retention_days: int = Field(default=DEFAULT_IMAGE_RETENTION_DAYS, ge=1)
    # remote maintenance (carbonflow/center/maintenance.py); maintenance_period_s = 0 turns the scheduler off
    maintenance_period_s: float = Field(default=30.0, ge=0)
    command_timeout_s: float = Field(default=300.0, gt=0)  # sent but unanswered this long -> queued again
    command_max_attempts: int = Field(default=3, ge=1)  # ... until this many tries, then failed
    collector_offline_after_s: float = Field(default=300.0, gt=0)  # no batch or status this long -> offline
    meter_check_period_s: float = Field(default=900.0, ge=0)  # electric-carbon meter checks; 0: never
    # interval metering by the wall clock (carbonflow/center/metering/loop.py): 900 = every 15 min;
    # 0 = not in this process (the demo meters on its simulated clock itself)
    metering_interval_s: int = Field(default=0, ge=0)
    metering_losses: str = Field(default="receiving", pattern="^(receiving|consumer)$")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CenterSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in ("database_url", "mqtt_url", "mqtt_client_id", "mqtt_topic_prefix", "time_zone"):
            if f"CARBONFLOW_{name.upper()}" in environ:
                values[name] = environ[f"CARBONFLOW_{name.upper()}"]
        if "CARBONFLOW_IMAGE_DIR" in environ:
            values["image_dir"] = environ["CARBONFLOW_IMAGE_DIR"]
        if "CARBONFLOW_IMAGE_RETENTION_DAYS" in environ:
            values["image_retention_days"] = int(environ["CARBONFLOW_IMAGE_RETENTION_DAYS"])
        for name in ("metering_interval_s",):
            if f"CARBONFLOW_{name.upper()}" in environ:
                values[name] = int(environ[f"CARBONFLOW_{name.upper()}"])
        if "CARBONFLOW_METERING_LOSSES" in environ:
            values["metering_losses"] = environ["CARBONFLOW_METERING_LOSSES"]
        if "CARBONFLOW_RETENTION_DAYS" in environ:
            values["retention_days"] = int(environ["CARBONFLOW_RETENTION_DAYS"])
        if "CARBONFLOW_API_TOKENS" in environ:  # "token1:alice,token2:bob"
            pairs = [item.split(":", 1) for item in environ["CARBONFLOW_API_TOKENS"].split(",") if item]
            values["api_tokens"] = {token: (user[0] if user else "api") for token, *user in pairs}
        return cls(**values)
