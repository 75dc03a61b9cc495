"""One poller per device, the same few calls for every protocol (over carbonflow/collector/clients).

``open``/``close``, ``poll`` -> values, ``read_clock_offset`` -> device clock minus collector clock (s),
``time_sync`` and ``set_carbon_factor`` -> a detail line.  Errors are the clients' DeviceErrors.

Timestamps (UTC): a polled meter (DL/T 645, DL/T 698.45, Modbus) does not time-stamp an instantaneous
read, so a value's ``ts`` is the collector's clock when the answer arrived.  Counters a DL/T 645 or
DL/T 698.45 meter freezes (points marked ``frozen``, device ``freeze_period_s``) are also read from its
freeze records after every boundary, time-stamped with the freeze time (see :mod:`.frozen`); so are a
Modbus meter's interval snapshots of points marked ``frozen``.  Values the device time-stamps itself
(IEC 104 CP56Time2a tags, frozen integrated totals, Modbus snapshots) keep the device's time while its
clock offset is within ``clock_tolerance_s``, else get ``time - offset`` and quality ``estimated``
(:func:`device_time_ts`, the rule of :mod:`.frozen`); untagged IEC 104 values the middle of the
window they were taken in — from the interrogation they answer, or from their arrival less the link's
latency — marked ``estimated`` when a boundary falls inside it (:mod:`.iec104_poller`).
The collector's own clock is assumed NTP-disciplined.

IEC 104 runs differently: the link stays open, a general interrogation (GI) is made at start and after
every reconnect, spontaneous data arrives by itself, and ``poll`` is a counter interrogation (CI);
every value reaches the collector through ``deliver`` (batched per event-loop tick).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from carbonflow.collector.clients.errors import DeviceError, RetryPolicy
from carbonflow.collector.config import LoadedConfig
from carbonflow.collector.validate import RawValue
from carbonflow.messages.c4 import Quality
from carbonflow.messages.collector_config import DeviceConfig
from carbonflow.protocols.dlt698.types import TimeUnit

Deliver = Callable[[str, list[RawValue]], None]
DLT645_DATE, DLT645_TIME, DLT645_CARBON_FACTOR = "04000101", "04000102", "F0030000"
IEC_QUALITY: dict[str, Quality] = {
    "IV": "invalid",
    "OV": "invalid",
    "NT": "stale",
    "BL": "stale",
    "SB": "estimated",
    "CA": "estimated",
}
OFFSET_SAMPLES = 20
COUNTER_TYPE_IDS = frozenset({15, 37})  # M_IT_NA_1, M_IT_TB_1: their tags are freeze times, not "now"
TI_SECONDS = {TimeUnit.SECOND: 1, TimeUnit.MINUTE: 60, TimeUnit.HOUR: 3600, TimeUnit.DAY: 86400}


Clock = Callable[[], datetime]  # the collector's time source, injected (the demo passes simulated time)


def system_clock() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime) -> datetime:
    """UTC, truncated to milliseconds: what every store keeps exactly (readings are unique on ts)."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def first_number(value: Any) -> Decimal | None:
    """A register's number: blocks and arrays give their first member (the total of an energy block,
    the total of a power array, phase A of a voltage array); non-numbers give None."""
    while isinstance(value, list | tuple) and value:
        value = value[0]
    return value if isinstance(value, Decimal) else None


def read_stamp(before: datetime, after: datetime, period_s: float | None) -> tuple[datetime, Quality]:
    """A polled value carries no time tag: the meter took it between the request and its answer, so its
    time is the middle of the exchange. When an interval boundary (a multiple of ``period_s``) falls in
    that window, the interval the value belongs to is not known: it is marked ``estimated`` (on a busy
    machine, or at the demo's accelerated clock, the window is seconds long)."""
    middle = to_ms(before + (after - before) / 2)
    if period_s and int(before.timestamp() // period_s) != int(after.timestamp() // period_s):
        return middle, "estimated"
    return middle, "good"


def _offset(device_time: datetime, before: datetime, after: datetime, resolution_s: float = 1.0) -> float:
    """Device clock minus collector clock, taking the middle of the exchange as the moment read.
    A clock shown in whole seconds is on average half a second behind what it shows, hence the
    ``resolution_s / 2`` (without it every meter would seem 0.5 s slow)."""
    middle = before + (after - before) / 2
    return round((device_time - middle).total_seconds() + resolution_s / 2, 3)


def device_time_ts(
    device_time: datetime, offset_s: float | None, device: DeviceConfig, quality: Quality = "good"
) -> tuple[datetime, Quality]:
    """``ts`` and quality of a value the device time-stamped itself (an IEC 104 tag, a freeze time, a
    Modbus interval snapshot): within the clock tolerance the device's time stands as it is - the
    offset measured is then latency and noise, and a freeze stays exactly on its boundary; beyond it,
    ``ts`` is the device time minus the offset and the value is ``estimated`` (right, but its time is
    not sure).  An offset not measured yet counts as none."""
    if offset_s is None or abs(offset_s) <= device.clock_tolerance_s:
        return to_ms(device_time), quality
    corrected = to_ms(device_time - timedelta(seconds=offset_s))
    return corrected, "estimated" if quality == "good" else quality


def factors_of(params: dict[str, Any]) -> list[Decimal]:
    raw = params.get("factors")
    if raw is None and "factor" in params:
        raw = [params["factor"]]
    if not isinstance(raw, list) or not raw:
        raise ValueError("params need 'factor' (a decimal string) or 'factors' (a list of them)")
    try:
        factors = [Decimal(str(f)) for f in raw]
    except ArithmeticError:
        raise ValueError(f"factors {raw!r}: not decimal numbers") from None
    if any(not f.is_finite() or f < 0 for f in factors):
        raise ValueError(f"factors {raw!r}: must be finite and not negative")
    return factors


class Poller(ABC):
    def __init__(
        self, device: DeviceConfig, config: LoadedConfig, deliver: Deliver, clock: Clock = system_clock
    ) -> None:
        self.device = device
        self.now = clock
        self.config = config
        self.deliver = deliver
        self.policy = RetryPolicy(
            timeout_s=device.timeout_s or 2.0,
            retries=device.retries or 0,
            backoff_s=min(0.2, (device.timeout_s or 2.0) / 4),
        )
        self.clock_offset_s: float | None = None

    @property
    def has_clock(self) -> bool:
        return True

    async def open(self) -> None:  # noqa: B027  (optional hook: most meters connect on first use)
        """Connect where the protocol keeps a link; polled meters connect on first use."""

    @abstractmethod
    async def close(self) -> None:
        """Release the protocol client's connection."""

    @abstractmethod
    async def poll(self) -> list[RawValue]:
        """Read every configured point once."""

    async def read_clock_offset(self) -> float | None:
        return None

    async def time_sync(self) -> str:
        raise DeviceError(f"{self.device.id}: this device has no clock to set")

    async def set_carbon_factor(self, params: dict[str, Any]) -> str:
        raise DeviceError(f"{self.device.id}: no carbon factor download for protocol {self.device.protocol}")
