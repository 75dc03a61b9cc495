"""Corrections of a recomputation's inputs, kept as records: what was wrong, for which period, and why.

Three kinds (docs/recompute.md):

* ``emission_factor`` — a generator's intensity (g/kWh, a decimal string) for the intervals ending in
  ``(start_ts, end_ts]`` (the annual verification of plant data corrects a past month);
* ``reading`` — one meter reading: ``element_id`` is the point, ``start_ts`` = ``end_ts`` its time,
  ``value`` the corrected value (decimal string, device units, as the device showed it);
* ``losses`` — the loss convention (``receiving`` or ``consumer``) for the intervals ending in
  ``(start_ts, end_ts]``.

A correction changes nothing by itself: ``carbonflow center recompute`` applies the corrections of its
range and writes a new version of the results; the stored readings stay as received (their hash chains
intact), a corrected reading is an overlay the recomputation reads instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import Target, connection_of
from carbonflow.center.store.errors import StoreError
from carbonflow.center.store.schema import AutoId, Base, Generator, Point
from carbonflow.center.store.types import UtcDateTime, utc

KINDS = ("emission_factor", "reading", "losses")
LOSS_CONVENTIONS = ("receiving", "consumer")


class InputCorrection(Base):
    __tablename__ = "input_corrections"
    __table_args__ = (
        CheckConstraint("kind IN ('emission_factor', 'reading', 'losses')", name="ck_input_corrections_kind"),
        Index("ix_input_corrections_period", "start_ts", "end_ts"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(30))
    element_id: Mapped[str | None] = mapped_column(String(200))  # generator id, point id; none for losses
    start_ts: Mapped[datetime] = mapped_column(UtcDateTime)
    end_ts: Mapped[datetime] = mapped_column(UtcDateTime)
    value: Mapped[str] = mapped_column(Text)  # decimal text (g/kWh, device units) or a loss convention
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


@dataclass(frozen=True)
class Correction:
    id: int
    kind: str
    element_id: str | None
    start_ts: datetime
    end_ts: datetime
    value: str
    reason: str | None = None
    actor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "element_id": self.element_id,
            "start": self.start_ts.isoformat(),
            "end": self.end_ts.isoformat(),
            "value": self.value,
            "reason": self.reason,
            "actor": self.actor,
        }

    def covers(self, end: datetime) -> bool:
        """Whether the interval ending at ``end`` is corrected (a reading: its window is checked apart)."""
        return self.start_ts < end <= self.end_ts


class CorrectionError(StoreError):
    """A correction that cannot be stored: the message names the offending field."""

    status_code = 422


def _checked(
    kind: str, element_id: str | None, start: datetime, end: datetime, value: str, connection
) -> str:
    if kind not in KINDS:
        raise CorrectionError(f"correction kind {kind!r}: must be one of {', '.join(KINDS)}")
    if kind == "losses":
        if value not in LOSS_CONVENTIONS:
            raise CorrectionError(f"losses correction: value {value!r} must be receiving or consumer")
        if element_id:
            raise CorrectionError("losses correction: names no element")
    else:
        try:
            number = Decimal(value)
        except (InvalidOperation, TypeError):
            raise CorrectionError(f"{kind} correction: value {value!r} is not a decimal number") from None
        if not number.is_finite() or (kind == "emission_factor" and number < 0):
            raise CorrectionError(f"{kind} correction: value {value!r} must be a finite number ≥ 0")
        model = Generator if kind == "emission_factor" else Point
        if (
            not element_id
            or connection.execute(select(model.id).where(model.id == element_id)).first() is None
        ):
            what = "generator" if kind == "emission_factor" else "point"
            raise CorrectionError(f"{kind} correction: unknown {what} {element_id!r}")
        value = str(number)
    if kind == "reading" and start != end:
        raise CorrectionError("reading correction: start and end are the reading's time (one instant)")
    if kind != "reading" and not start < end:
        raise CorrectionError(
            f"{kind} correction: start {start.isoformat()} must be before end {end.isoformat()}"
        )
    return value


def add_correction(
    target: Target,
    kind: str,
    element_id: str | None,
    start: datetime,
    end: datetime,
    value: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
) -> Correction:
    """Store one correction (checked: a known generator or point, a decimal value, a period)."""
    start, end = utc(start), utc(end)
    with connection_of(target, write=True) as connection:
        value = _checked(kind, element_id, start, end, value, connection)
        row = {
            "kind": kind,
            "element_id": element_id or None,
            "start_ts": start,
            "end_ts": end,
            "value": value,
            "reason": reason,
            "actor": actor,
            "created_at": datetime.now(UTC),
        }
        new_id = connection.execute(InputCorrection.__table__.insert().returning(InputCorrection.id), row)
        return Correction(int(new_id.scalar_one()), kind, row["element_id"], start, end, value, reason, actor)


def corrections(
    target: Target, start: datetime | None = None, end: datetime | None = None
) -> list[Correction]:
    """The corrections touching intervals that end in ``(start, end]`` (all without bounds), by id.
    A reading correction touches the intervals whose window holds it: up to one interval either side,
    so the caller widens the range by two intervals before asking."""
    table = InputCorrection.__table__
    query = select(table).order_by(table.c.id)
    if start is not None:
        query = query.where(table.c.end_ts >= utc(start))
    if end is not None:
        query = query.where(table.c.start_ts <= utc(end))
    with connection_of(target, write=False) as connection:
        rows = connection.execute(query).all()
    return [
        Correction(r.id, r.kind, r.element_id, r.start_ts, r.end_ts, r.value, r.reason, r.actor) for r in rows
    ]
