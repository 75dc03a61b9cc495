"""Alarm rules as data: one pydantic model, validated with a message naming the rule and the field.

A rule says *what* is abnormal (``kind`` and its parameters), *where* (``scope``: a region prefix, a
device kind, device ids as shell patterns, an element kind), *how sure* before raising (the condition
held in at least ``count`` of the last ``window`` evaluations: ``count == window`` is a duration,
``count < window`` a repeat count) and before clearing (``clear_after`` clean evaluations in a row —
the hysteresis that keeps a value hovering at a threshold from raising and clearing every interval), how
bad (``severity``) and whom to tell (``notify``: channel names of the notification settings).

Kinds (what each looks at; all evaluated once per metered interval, the device-state ones also when a
device status arrives and at the scheduler's tick):

* ``threshold`` — ``quantity`` above ``above`` and/or below ``below`` (``absolute``: on |value|);
* ``rate_of_change`` — ``quantity`` changed by more than ``max_change`` (units of the quantity) or
  ``max_change_percent`` since the previous interval;
* ``comm_loss`` — a device reported offline by its collector, or silent for ``after_s``;
* ``collector_loss`` — a collector silent for ``after_s``;
* ``data_gap`` — an interval not metered, metered below ``min_completeness``, or with more than
  ``max_estimates`` estimated inputs;
* ``stuck_value`` — a point showing the very same non-zero value for ``intervals`` intervals in a row
  (intervals without a reading of the point neither count nor break the run; ``max_step_share``: only
  points shown finely enough to move; ``same_value = false`` instead: only intervals in which an online
  device brought no new reading count — for devices reporting on change only);
* ``balance_residual`` — the interval's carbon balance residual above ``tolerance`` (share of generation);
* ``meter_mismatch`` — an electric-carbon meter check (``center/metering/meter_check.py``) said mismatch;
* ``clock_offset`` — a device clock off by more than ``tolerance`` seconds;
* ``camera_offline`` — a site camera offline or silent for ``after_s``;
* ``tamper`` — a counter register jumping by more than ``ratio`` × its usual increment (plus
  ``min_jump``) or running backwards; and readings offered again with a different value;
* ``cascade_mismatch`` — a verification verdict of the cascade (a hook the cascade calls).

Quantities (``threshold``/``rate_of_change``): ``bus.intensity_g_per_kwh``, ``bus.band_g_per_kwh``,
``totals.<name>`` (e.g. ``totals.loss_carbon_t_per_h``), ``interval.completeness``,
``interval.estimates``, ``point.<quantity>`` (a measured point, e.g. ``point.p_mw``, in §3 units).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.toml")
KINDS = (
    "threshold",
    "rate_of_change",
    "comm_loss",
    "collector_loss",
    "data_gap",
    "stuck_value",
    "balance_residual",
    "meter_mismatch",
    "clock_offset",
    "camera_offline",
    "tamper",
    "cascade_mismatch",
)
SEVERITIES = ("critical", "major", "minor", "warning")
QUANTITY_PREFIXES = ("bus.", "totals.", "interval.", "point.")
BUS_QUANTITIES = ("bus.intensity_g_per_kwh", "bus.band_g_per_kwh")
INTERVAL_QUANTITIES = ("interval.completeness", "interval.estimates")


class RuleError(ValueError):
    """A rule definition that cannot be used; the message names the rule and the field."""

    def __init__(self, message: str, field: str | None = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.field, self.rule = field, rule


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = None  # region path prefix, "AH/HF"
    device_kind: str | None = None  # devices.kind or a shell pattern, e.g. "carbon_meter", "*_rtu"
    devices: list[str] = Field(default_factory=list)  # ids or shell patterns ("EM-U0*")
    element_kinds: list[Literal["bus", "branch", "generator", "load", "storage"]] = Field(
        default_factory=list
    )  # points of these elements only
    buses: list[str] = Field(default_factory=list)  # bus ids (bus quantities)


class AlarmRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    kind: Literal[KINDS]  # type: ignore[valid-type]
    severity: Literal[SEVERITIES] = "major"  # type: ignore[valid-type]
    enabled: bool = True
    description: str = ""
    scope: Scope = Field(default_factory=Scope)
    quantity: str | None = None
    above: float | None = None
    below: float | None = None
    absolute: bool = False
    max_change: float | None = Field(default=None, gt=0)
    max_change_percent: float | None = Field(default=None, gt=0)
    after_s: float | None = Field(default=None, gt=0)
    min_completeness: float | None = Field(default=None, ge=0, le=1)
    max_estimates: int | None = Field(default=None, ge=0)
    tolerance: float | None = Field(default=None, gt=0)
    intervals: int = Field(default=3, ge=1, le=1000)  # stuck_value
    same_value: bool = True  # stuck_value: identical values count; False: only intervals without a reading
    # stuck_value (same_value): judge only points whose display step is at most this share of |value| —
    # a coarse display of a steady load repeats itself without anything being stuck
    max_step_share: float | None = Field(default=None, gt=0, le=1)
    quantities: list[str] = Field(default_factory=list)  # stuck_value / tamper: point quantities
    ratio: float = Field(default=3.0, gt=0)  # tamper
    min_jump: float = Field(default=1.0, ge=0)  # tamper, in the register's §3 unit
    count: int = Field(default=1, ge=1, le=1000)
    window: int = Field(default=1, ge=1, le=1000)
    clear_after: int = Field(default=1, ge=1, le=1000)
    notify: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parameters_of_the_kind(self) -> AlarmRule:
        def need(name: str, why: str) -> None:
            raise RuleError(f"{name}: required for a {self.kind} rule ({why})", name, self.id)

        if self.count > self.window:
            raise RuleError(f"count: {self.count} is more than window {self.window}", "count", self.id)
        if self.kind in ("threshold", "rate_of_change"):
            if not self.quantity:
                need("quantity", "e.g. bus.intensity_g_per_kwh, totals.loss_carbon_t_per_h, point.p_mw")
            assert self.quantity is not None
            if not self.quantity.startswith(QUANTITY_PREFIXES) or self.quantity.endswith("."):
                raise RuleError(
                    f"quantity: {self.quantity!r} must start with one of {', '.join(QUANTITY_PREFIXES)}",
                    "quantity",
                    self.id,
                )
            if self.quantity.startswith("bus.") and self.quantity not in BUS_QUANTITIES:
                raise RuleError(f"quantity: unknown bus quantity {self.quantity!r}", "quantity", self.id)
            if self.quantity.startswith("interval.") and self.quantity not in INTERVAL_QUANTITIES:
                raise RuleError(f"quantity: unknown interval quantity {self.quantity!r}", "quantity", self.id)
        if self.kind == "threshold" and self.above is None and self.below is None:
            need("above", "give above and/or below")
        if self.kind == "rate_of_change" and self.max_change is None and self.max_change_percent is None:
            need("max_change", "or max_change_percent")
        if self.kind in ("comm_loss", "collector_loss") and self.after_s is None:
            need("after_s", "seconds of silence")
        if self.kind == "data_gap" and self.min_completeness is None and self.max_estimates is None:
            need("min_completeness", "or max_estimates")
        if self.kind in ("balance_residual", "clock_offset") and self.tolerance is None:
            need("tolerance", "share of generation" if self.kind == "balance_residual" else "seconds")
        return self


def _field_of(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "rule"


def parse_rule(data: Any, position: int | None = None) -> AlarmRule:
    """One rule from a mapping; a bad one raises :class:`RuleError` naming the rule and the field."""
    where = f"rule {position}" if position is not None else "rule"
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        where = f"rule {data['id']!r}"
    if not isinstance(data, dict):
        raise RuleError(f"{where}: expected an object, got {type(data).__name__}", None, None)
    try:
        return AlarmRule.model_validate(data)
    except RuleError as error:
        raise RuleError(f"{where}: {error}", error.field, error.rule) from None
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        inner = first.get("ctx", {}).get("error")
        if isinstance(inner, RuleError):
            raise RuleError(f"{where}: {inner}", inner.field, inner.rule) from None
        field = _field_of(first)
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise RuleError(f"{where}: {field}: {message}", field, data.get("id")) from None


def parse_rules(data: Any) -> list[AlarmRule]:
    """A rule set: a list, or ``{"rules": [...]}`` (TOML ``[[rules]]``); ids must be unique."""
    if isinstance(data, dict):
        data = data.get("rules")
    if not isinstance(data, list):
        raise RuleError("rules: expected a list of rules (or an object with 'rules')", "rules")
    rules = [parse_rule(item, k) for k, item in enumerate(data)]
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(f"rule {rule.id!r}: id: appears twice", "id", rule.id)
        seen.add(rule.id)
    return rules


def default_rules() -> list[AlarmRule]:
    """The rules shipped with carbonflow (``default_rules.toml``), used until rules are stored."""
    return parse_rules(tomllib.loads(DEFAULT_RULES_FILE.read_text(encoding="utf-8")))


def rules_document(rules: list[AlarmRule]) -> list[dict[str, Any]]:
    return [rule.model_dump(mode="json", exclude_defaults=False) for rule in rules]
