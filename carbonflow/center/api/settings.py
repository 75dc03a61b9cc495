"""Center settings: one pydantic-settings class, from code, a dict (TOML) or the environment.

Every field ``name`` is read from the environment variable ``CARBONFLOW_<NAME>`` (docs/configuration.md);
values given in code win over the environment.  ``CenterSettings.from_env()`` is the edge the CLI and
``create_app`` use: a bad value there is one :class:`SettingsError` line naming the variable.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from carbonflow.center.store import DEFAULT_IMAGE_RETENTION_DAYS, DEFAULT_RETENTION_DAYS
from carbonflow.delivery.tls import both_or_neither, client_context, uvicorn_ssl

ENV_PREFIX = "CARBONFLOW_"


class SettingsError(ValueError):
    """A setting from the environment that cannot be used; the message is one line naming the variable."""


class _Environment(EnvSettingsSource):
    """The environment (or a given mapping), with ``api_tokens`` in its documented ``token:user,...``
    form rather than the JSON pydantic-settings expects of a dict."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        if environ is not None:  # keys folded like pydantic-settings folds os.environ (case-insensitive)
            self.env_vars = {key.lower(): value for key, value in environ.items()}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if field_name == "api_tokens" and isinstance(value, str):
            return value  # parsed by CenterSettings._token_pairs
        return super().prepare_field_value(field_name, field, value, value_is_complex)


class CenterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    database_url: str = "sqlite:///carbonflow-center.db"
    # bearer tokens for scripts (token → user name); env form "token1:alice,token2:bob"
    api_tokens: dict[str, str] = Field(default_factory=dict)
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1)
    mqtt_url: str | None = None  # e.g. mqtt://127.0.0.1:1883; None: HTTP ingest only
    mqtt_client_id: str = "carbonflow-center"
    mqtt_topic_prefix: str = "carbonflow"
    # MQTT over TLS (docs/tls.md), with an mqtts:// mqtt_url: the CA that signed the broker's certificate
    # (default: the system's CAs) and the center's client certificate (its CN is the broker's ACL user)
    mqtt_ca_file: str | None = None
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    # HTTPS served by the center itself (docs/tls.md): its certificate and key, both or neither
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    time_zone: str = "Asia/Shanghai"  # local time of the UI, of "today" and of aggregation buckets
    session_hours: float = Field(default=12.0, gt=0)  # lifetime of a login session
    cookie_secure: bool = False  # the session cookie's Secure flag even on plain HTTP (always on with TLS)
    # security (center/api/policy.py, docs/security.md)
    center_region: str = ""  # the region this center's data spans ("" = all); whole-center views need it
    allowed_origins: list[str] = Field(default_factory=list)  # extra Origins allowed for cookie writes
    login_max_failures: int = Field(default=5, ge=1)  # wrong passwords in a row (per user or address) ...
    login_lockout_s: float = Field(default=300.0, gt=0)  # ... lock logins for this long (429 Retry-After)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # larger request bodies: 413
    max_json_depth: int = Field(default=32, ge=4)  # deeper JSON nesting: 400
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
    # alarms (carbonflow/center/alarms, docs/alarms.md): the tick of the time-based rules (0: off) and
    # the notification channels — a webhook URL, and/or SMTP with comma-separated recipients
    alarm_tick_s: float = Field(default=10.0, ge=0)
    alarm_webhook_url: str | None = None
    alarm_smtp_host: str | None = None
    alarm_smtp_port: int = Field(default=25, ge=1, le=65535)
    alarm_smtp_starttls: bool = False
    alarm_smtp_user: str | None = None
    alarm_smtp_password: str | None = None
    alarm_email_from: str = "carbonflow@localhost"
    alarm_email_to: str | None = None
    alarm_notify_max_attempts: int = Field(default=5, ge=1)
    # the cascade between centers (docs/cascade.md): a TOML file with this center's id, key and peers
    cascade_config: str | None = None
    # tie lines with neighbouring regions' centers (docs/interop.md): a TOML file with this center's id,
    # key, neighbours and ties; their published intensities price the power imported over the ties
    ties_config: str | None = None
    # carbon reports (docs/reports.md): files under report_dir (default: next to an SQLite database);
    # report_schedule: "period:format" entries the maintenance scheduler builds once per ended period
    report_dir: str | None = None
    report_schedule: list[str] = Field(default_factory=list)  # e.g. ["day:csv", "month:xlsx", "year:pdf"]
    # public disclosure: aggregates behind fewer users are suppressed; key users shown only if consenting
    disclosure_min_users: int = Field(default=3, ge=1)
    disclosure_consent: list[str] = Field(default_factory=list)  # load (user) ids that consented
    # market-based Scope 2 emissions (docs/interop.md): a TOML file of users' green electricity
    # certificates / PPAs / green tariffs and the residual mix; None: location-based only
    green_contracts_file: str | None = None
    # tamper evidence (docs/tamper-evidence.md): how often the maintenance scheduler signs the chain heads
    # (0: never; `carbonflow audit checkpoint` still can), and the Ed25519 key file (made 0600 on first
    # start; default carbonflow-audit.key next to an SQLite database, else in the working directory)
    audit_checkpoint_period_s: float = Field(default=3600.0, ge=0)
    audit_key_file: str | None = None

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _token_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs = [item.split(":", 1) for item in value.split(",") if item]
        return {token: (user[0] if user else "api") for token, *user in pairs}

    @field_validator("report_schedule")
    @classmethod
    def _schedule_entries(cls, value: list[str]) -> list[str]:
        from carbonflow.center.reports.service import parse_schedule

        parse_schedule(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> CenterSettings:
        both_or_neither(self.tls_cert_file, self.tls_key_file, _env("tls_cert_file"), _env("tls_key_file"))
        both_or_neither(
            self.mqtt_cert_file, self.mqtt_key_file, _env("mqtt_cert_file"), _env("mqtt_key_file")
        )
        given = [f for f in ("mqtt_ca_file", "mqtt_cert_file") if getattr(self, f) is not None]
        if given and not (self.mqtt_url or "").startswith("mqtts://"):
            raise ValueError(
                f"{_env(given[0])} is for MQTT over TLS: {_env('mqtt_url')} must be mqtts://host:port"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        """The center serves HTTPS itself (the session cookie is then always Secure)."""
        return self.tls_cert_file is not None

    def uvicorn_ssl(self) -> dict[str, str]:
        """uvicorn's ssl options for ``tls_cert_file``/``tls_key_file`` (checked: TlsError), or none."""
        return uvicorn_ssl(self.tls_cert_file, self.tls_key_file)

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The context of an mqtts:// broker (checked: TlsError); None for plain mqtt://."""
        if not (self.mqtt_url or "").startswith("mqtts://"):
            return None
        return client_context(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls)  # code first, then CARBONFLOW_* variables

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CenterSettings:
        """Settings from ``environ`` (default: the process environment) and the defaults; ``overrides``
        (command-line options) win and are validated with the rest (e.g. a TLS file needs its pair)."""
        values = {**_Environment(cls, os.environ if environ is None else environ)(), **overrides}
        try:
            return cls.model_validate(values)  # not cls(**values): that would read os.environ again
        except ValidationError as error:
            raise SettingsError(_one_line(error, values)) from None


def _env(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _one_line(error: ValidationError, values: Mapping[str, Any]) -> str:
    first = error.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    message = first["msg"].removeprefix("Value error, ")
    if not field:  # a check across settings: its message names the variables
        return message
    shown = f"={values[field]!r}" if field in values and not field.startswith("api_tokens") else ""
    return f"{ENV_PREFIX}{field.upper()}{shown}: {message}"
