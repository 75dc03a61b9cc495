"""Interval metering in the center: readings -> snapshot -> engine -> stored results -> factor downloads.

For every interval: read the mapped points' readings from the store, assemble the snapshot (with
estimates where data is missing), solve the carbon emission flow, store the result with its origin
matrix, carry the storage carbon state on, and queue the download of each electric-carbon meter's new
nodal factor through its collector.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from carbonflow.center.metering.assemble import Assembled, assemble_snapshot
from carbonflow.center.metering.measurements import PointMapping, StoredReading, measurements_for_interval
from carbonflow.center.store import Store, interval_from_document, queue_command, save_interval
from carbonflow.center.store.schema import Device, Point, Reading
from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.engine.origin import origin_shares
from carbonflow.engine.storage import StorageState

log = logging.getLogger(__name__)
CARBON_METER_KINDS = ("carbon_meter",)


@dataclass
class IntervalOutcome:
    end: datetime
    stored: bool
    totals: dict[str, float] = field(default_factory=dict)
    estimates: int = 0
    factors_queued: int = 0
    error: str | None = None
    intensities: dict[str, float | None] = field(default_factory=dict)  # bus id -> g/kWh


class MeteringService:
    def __init__(
        self,
        store: Store,
        topology: Mapping[str, Any],
        interval_s: int,
        *,
        losses: str = "receiving",
        level: str = "",
        storage_soc: float = 0.5,
        storage_start_intensity_g_per_kwh: float = 600.0,
        min_completeness: float = 0.5,
    ) -> None:
        self.min_completeness = min_completeness
        self.store = store
        self.topology = topology
        self.interval_s = interval_s
        self.losses = losses
        self.level = level
        self.previous: dict[str, dict[str, float]] = {}
        self.storage = {
            s["id"]: StorageState(
                energy_mwh=storage_soc * float(s.get("max_e_mwh", 0.0)),
                carbon_t=storage_soc
                * float(s.get("max_e_mwh", 0.0))
                * storage_start_intensity_g_per_kwh
                / 1000,
                eta_charge=float(s.get("eta", 1.0)),
                eta_discharge=float(s.get("eta", 1.0)),
                empty_intensity_g_per_kwh=storage_start_intensity_g_per_kwh,
            )
            for s in topology.get("storage", [])
        }
        self.points = self._point_mappings()

    def _point_mappings(self) -> list[PointMapping]:
        """The mapping point -> element quantity, from the store: adding a device never needs code."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(Point.id, Point.element_kind, Point.element_id, Point.quantity, Point.end, Point.scale)
            ).all()
        return [
            PointMapping(
                point_id,
                kind,
                element,
                quantity,
                end or "-",
                Decimal(1) / scale if scale else Decimal(1),
            )
            for point_id, kind, element, quantity, end, scale in rows
        ]

    def refresh_points(self) -> None:
        self.points = self._point_mappings()

    def _readings(self, start: datetime, end: datetime) -> list[StoredReading]:
        with self.store.read() as connection:
            rows = connection.execute(
                select(Reading.point_id, Reading.ts, Reading.value, Reading.quality).where(
                    Reading.ts >= start, Reading.ts <= end
                )
            ).all()
        return [StoredReading(*row) for row in rows]

    def meter_interval(self, end: datetime, *, download_factors: bool = True) -> IntervalOutcome:
        start = end - timedelta(seconds=self.interval_s)
        # a counter read up to one interval before a boundary still marks it (polls are not aligned)
        # and readings just after each boundary let the register be interpolated to it
        readings = self._readings(
            start - timedelta(seconds=self.interval_s), end + timedelta(seconds=self.interval_s)
        )
        data = measurements_for_interval(self.points, readings, start, end, max_age_s=self.interval_s)
        discharge = {sid: state.discharge_intensity_g_per_kwh for sid, state in self.storage.items()}
        assembled = assemble_snapshot(self.topology, data, self.previous, discharge)
        completeness = self._completeness(assembled)
        if completeness < self.min_completeness:
            message = f"only {completeness:.0%} of generators, loads and branches measured"
            log.warning("interval ending %s not metered: %s", end.isoformat(), message)
            return IntervalOutcome(end, stored=False, estimates=len(assembled.estimates), error=message)
        try:
            result = solve(snapshot_from_dict(assembled.snapshot), self.losses)
        except SnapshotError as error:
            log.warning("interval ending %s not metered: %s", end.isoformat(), error)
            return IntervalOutcome(end, stored=False, estimates=len(assembled.estimates), error=str(error))
        document = result_document(result, origin_shares(result))
        record = interval_from_document(
            end,
            self.interval_s,
            document,
            level=self.level,
            snapshot=assembled.snapshot,
            estimation={
                "completeness": completeness,
                "estimates": [e.as_dict() for e in assembled.estimates],
            },
            origin=document.get("origin"),
        )
        save_interval(self.store, record)
        self.previous = assembled.values
        self._carry_storage(assembled, document)
        queued = self.queue_factor_downloads(document, end) if download_factors else 0
        intensities = {b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]}
        return IntervalOutcome(
            end, True, document["totals"], len(assembled.estimates), queued, None, intensities
        )

    def _completeness(self, assembled: Assembled) -> float:
        """Share of generators, loads and branches whose power was measured (not held or zeroed)."""
        total = sum(len(self.topology.get(k, [])) for k in ("generators", "loads", "branches"))
        guessed = {
            (e.element_kind, e.element_id)
            for e in assembled.estimates
            if e.method in ("zero", "previous interval") and e.element_kind in ("generator", "load", "branch")
        }
        return 1.0 - len(guessed) / total if total else 0.0

    def _carry_storage(self, assembled: Assembled, document: Mapping[str, Any]) -> None:
        hours = self.interval_s / 3600.0
        intensity = {b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]}
        for record in assembled.snapshot.get("storage", []):
            state = self.storage.get(record["id"])
            if state is None:
                continue
            p_mw = float(record["p_mw"])
            if p_mw > 0:
                self.storage[record["id"]] = state.charge(p_mw, intensity.get(record["bus"]) or 0.0, hours)
            elif p_mw < 0:
                self.storage[record["id"]] = state.discharge(-p_mw, hours)

    def queue_factor_downloads(self, document: Mapping[str, Any], end: datetime) -> int:
        """Each electric-carbon meter gets the nodal intensity of its bus for the next interval."""
        intensity = {b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]}
        # consumers' meters only: a plant outlet meter counts with its unit's own factor
        with self.store.read() as connection:
            meters = connection.execute(
                select(Device.id, Device.collector_id, Device.bus_id)
                .join(Point, Point.device_id == Device.id)
                .where(Device.kind.in_(CARBON_METER_KINDS), Point.element_kind == "load")
                .distinct()
            ).all()
        queued = 0
        for device_id, collector_id, bus in meters:
            value = intensity.get(bus)
            if collector_id is None or value is None:
                continue
            queue_command(
                self.store,
                collector_id,
                "set_carbon_factor",
                device_id=device_id,
                params={  # electric-carbon meters hold kgCO2/kWh at 4 decimals (scaler -4)
                    "factor": f"{value / 1000:.4f}",
                    "unit": "kgCO2/kWh",
                    "start": end.isoformat(),
                    "interval_s": self.interval_s,
                    "source": f"nodal intensity of bus {bus}",
                },
                actor="metering",
                now=end,
            )
            queued += 1
        return queued
