"""CP56Time2a: the 7-octet time tag of IEC 60870-5 (milliseconds to two-digit year).

Octets: milliseconds incl. seconds (2, little-endian, 0..59999); minute (bits 0-5) with IV (bit 7,
time invalid); hour (bits 0-4) with SU (bit 7, summer time); day of month (bits 0-4) with day of week
(bits 5-7, 1 = Monday, 0 = not used); month (bits 0-3); year (bits 0-6, 0..99 = 2000..2099).
Reserved bits are ignored on decode and sent as zero.  The tag carries no time zone: the station's
zone is a configuration matter, so conversion takes the zone as a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from carbonflow.protocols.errors import ProtocolError

SIZE = 7
CENTURY = 2000


@dataclass(frozen=True)
class CP56Time2a:
    year: int  # full year, 2000..2099
    month: int
    day: int
    hour: int
    minute: int
    milliseconds: int  # seconds * 1000 + ms, 0..59999
    day_of_week: int = 0  # 1 = Monday .. 7 = Sunday, 0 = not used
    invalid: bool = False  # IV
    summer_time: bool = False  # SU

    def __post_init__(self) -> None:
        checks = (
            (CENTURY <= self.year < CENTURY + 100, "year", self.year),
            (1 <= self.month <= 12, "month", self.month),
            (1 <= self.day <= 31, "day", self.day),
            (0 <= self.hour <= 23, "hour", self.hour),
            (0 <= self.minute <= 59, "minute", self.minute),
            (0 <= self.milliseconds <= 59999, "milliseconds", self.milliseconds),
            (0 <= self.day_of_week <= 7, "day of week", self.day_of_week),
        )
        for ok, what, value in checks:
            if not ok:
                raise ProtocolError(f"CP56Time2a {what} {value} out of range")

    def to_datetime(self, tz: tzinfo = UTC) -> datetime:
        """The tag as an aware datetime in the station's zone ``tz``."""
        seconds, ms = divmod(self.milliseconds, 1000)
        try:
            return datetime(self.year, self.month, self.day, self.hour, self.minute, seconds, ms * 1000, tz)
        except ValueError as error:
            raise ProtocolError(f"CP56Time2a is not a date: {error}") from None

    def isoformat(self) -> str:
        """Wall-clock time of the station, without zone (the tag carries none); written field by field
        so that a tag naming an impossible day (31 February) can still be shown as it was sent."""
        seconds, ms = divmod(self.milliseconds, 1000)
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
            f"T{self.hour:02d}:{self.minute:02d}:{seconds:02d}.{ms:03d}"
        )

    @classmethod
    def from_datetime(
        cls, when: datetime, invalid: bool = False, summer_time: bool = False, with_weekday: bool = True
    ) -> CP56Time2a:
        """Tag for ``when``'s wall-clock fields (convert to the station's zone first)."""
        return cls(
            year=when.year,
            month=when.month,
            day=when.day,
            hour=when.hour,
            minute=when.minute,
            milliseconds=when.second * 1000 + when.microsecond // 1000,
            day_of_week=when.isoweekday() if with_weekday else 0,
            invalid=invalid,
            summer_time=summer_time,
        )


def encode(tag: CP56Time2a) -> bytes:
    return bytes(
        [
            tag.milliseconds & 0xFF,
            tag.milliseconds >> 8,
            tag.minute | (0x80 if tag.invalid else 0),
            tag.hour | (0x80 if tag.summer_time else 0),
            tag.day | tag.day_of_week << 5,
            tag.month,
            tag.year - CENTURY,
        ]
    )


def decode(data: bytes) -> CP56Time2a:
    if len(data) != SIZE:
        raise ProtocolError(f"CP56Time2a needs {SIZE} bytes, got {len(data)}")
    return CP56Time2a(
        year=CENTURY + (data[6] & 0x7F),
        month=data[5] & 0x0F,
        day=data[4] & 0x1F,
        hour=data[3] & 0x1F,
        minute=data[2] & 0x3F,
        milliseconds=data[0] | data[1] << 8,
        day_of_week=data[4] >> 5,
        invalid=bool(data[2] & 0x80),
        summer_time=bool(data[3] & 0x80),
    )
