"""Interval metering in the center: readings -> snapshot -> engine -> stored results -> factor downloads.

For every interval: read the mapped points' readings from the store, assemble the snapshot (with
estimates where data is missing), solve the carbon emission flow, store the result with its origin
matrix, carry the storage carbon state on, and queue the download of each electric-carbon meter's new
nodal factor through its collector.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import func, select

from carbonflow.center.metering.assemble import ASSEMBLED_QUANTITIES, Assembled, assemble_snapshot
from carbonflow.center.metering.columns import ReadingColumns
from carbonflow.center.metering.measurements import (
    COUNTER_QUANTITIES,
    HELD_QUANTITIES,
    PointIndex,
    PointMapping,
    StoredReading,
    measurements_for_interval,
)
from carbonflow.center.metering.recompute_snapshot import element_columns
from carbonflow.center.metering.uncertainty import input_uncertainty
from carbonflow.center.metering.window import RunCache, window_readings
from carbonflow.center.store import (
    IntervalRecord,
    Store,
    interval_from_document,
    queue_command,
    save_new_version,
)
from carbonflow.center.store.intervals import is_complete
from carbonflow.center.store.schema import Device, Interval, Point, Reading
from carbonflow.center.store.types import utc
from carbonflow.engine import Snapshot, SnapshotError, snapshot_from_dict, solve, warm_up
from carbonflow.engine.cef import CefResult
from carbonflow.engine.document import OriginParts, origin_parts, result_document
from carbonflow.engine.origin import Origin, origin_shares
from carbonflow.engine.storage import StorageState
from carbonflow.engine.uncertainty import DEFAULT_SAMPLES, propagate

log = logging.getLogger(__name__)
CARBON_METER_KINDS = ("carbon_meter",)
HELD_MAX_AGE = timedelta(days=1)  # a factor register unchanged for longer is not trusted as in force
KEEP_INTERVALS = 512  # assembled values kept per interval, for metering a late interval again
ASSEMBLED_SECTIONS = ("generators", "loads", "storage", "branches")  # the elements the assembly reads
KNOWN_RUNS = 4  # runs of readings' point ids remembered as known (each: one collector's points at one time)


@dataclass
class IntervalOutcome:
    end: datetime
    stored: bool
    totals: dict[str, float] = field(default_factory=dict)
    estimates: int = 0
    factors_queued: int = 0
    error: str | None = None
    intensities: dict[str, float | None] = field(default_factory=dict)  # bus id -> g/kWh
    derived: int = 0  # inputs fixed by a law from measured ones (bus balance, zero-emission units)
    completeness: float = 0.0
    version: int = 0  # 1: first metering; more: metered again when late readings arrived
    readings: int = 0  # readings the interval was metered from
    bands: dict[str, float | None] = field(default_factory=dict)  # bus id -> expanded uncertainty g/kWh
    totals_band: dict[str, float] = field(default_factory=dict)
    # what the interval was metered from (its window: one interval either side): later evaluations of
    # the same interval (alarms) read these instead of the store again
    source_readings: Sequence[StoredReading] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """Every input measured or derived from measured ones: nothing estimated, nothing missing."""
        return self.stored and self.estimates == 0 and self.completeness >= 1.0


@dataclass
class Computed:
    """One interval computed from its readings (:meth:`MeteringService.compute_interval`), not stored.
    ``document`` is None when it could not be metered (``error`` says why)."""

    assembled: Assembled
    completeness: float
    readings: int
    document: dict[str, Any] | None = None
    error: str | None = None
    bands: dict[str, float | None] = field(default_factory=dict)  # bus id -> expanded uncertainty g/kWh
    totals_band: dict[str, float] = field(default_factory=dict)
    uncertainty: dict[str, Any] | None = None
    # what ``document`` was made from: the result hash is made from their arrays (``record_of``)
    engine: tuple[CefResult, Origin, OriginParts] | None = field(default=None, repr=False)


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while an interval is metered: it allocates hundreds of thousands of
    small acyclic objects (readings, measurements, rows), and the collections they triggered, each
    walking the whole heap, took as long as the metering itself on a 2,000-bus grid.  Collection
    resumes (if it was on) when the interval is stored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def with_factors(snapshot: dict[str, Any], factors: Mapping[str, float] | None) -> dict[str, Any]:
    """``snapshot`` (a C1 document, changed in place) with the intensities of ``factors``' generators
    replaced: an emission factor corrected for a past period."""
    if factors:
        for generator in snapshot.get("generators", []):
            if generator["id"] in factors:
                generator["intensity_g_per_kwh"] = factors[generator["id"]]
    return snapshot


class Solved(NamedTuple):
    """An interval's snapshot solved: the engine's result and origin shares, and their document."""

    snapshot: Snapshot
    document: dict[str, Any]
    result: CefResult
    origin: Origin
    parts: OriginParts  # the origin matrices in sparse form, for the document and the result hash


def interval_result(snapshot_document: Mapping[str, Any], losses: str, *, with_origin: bool = True) -> Solved:
    """The engine's part of metering an interval: the C1 snapshot solved under ``losses``, as the result
    document with its origin shares (raises ``SnapshotError``).  Live metering and recomputation alike.
    ``with_origin=False``: the document without its ``origin`` part (the origin is stored packed from
    ``parts``, and its document — ~8,000 loads' dicts at 10,000 buses — is then never read)."""
    snapshot = snapshot_from_dict(snapshot_document)
    result = solve(snapshot, losses)
    origin = origin_shares(result)
    parts = origin_parts(origin)
    document = result_document(result, origin if with_origin else None, parts)
    return Solved(snapshot, document, result, origin, parts)


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
        uncertainty_samples: int = DEFAULT_SAMPLES,
    ) -> None:
        self.min_completeness = min_completeness
        self.uncertainty_samples = uncertainty_samples
        self.store = store
        self.topology = topology
        self.interval_s = interval_s
        self.losses = losses
        self.level = level
        self.previous: dict[str, dict[str, float]] = {}
        self._values_by_end: dict[datetime, dict[str, dict[str, float]]] = {}
        self._carried: set[datetime] = set()  # intervals whose storage carbon has been carried on
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
        self._known_points: frozenset[str] = frozenset()  # every point id in the store (mapped or left out)
        self.points = self._point_mappings()
        self._indexed: PointIndex | None = None
        self._held: tuple[list[PointMapping], int, list[str], str] | None = None  # _held_points
        self._runs = RunCache()  # the last window's readings by time stamp (SQLite): the next shares most
        self.ties: Any = None  # a crossregion.TieLink (set by the wiring): neighbours' tie intensities
        warm_up()  # load the compiled engine kernel now rather than in the first interval

    def _point_mappings(self) -> list[PointMapping]:
        """The mapping point -> element quantity, from the store: adding a device never needs code.

        The device value times ``1/scale`` is the element's (CT x VT included for a secondary-side
        point); each point carries its device's MPE and its register's resolution.  Secondary-side
        points of a device without its CT or VT ratio are left out (the device's ``metrology_error``
        says so): the interval meters with those inputs estimated, never at x1."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(
                    Point.id, Point.element_kind, Point.element_id, Point.quantity, Point.end, Point.scale,
                    Point.accuracy_percent, Point.resolution,
                    (Point.secondary.is_(True) & (Device.ct_ratio.is_(None) | Device.vt_ratio.is_(None)))
                    .label("left_out"),
                ).join(Device, Device.id == Point.device_id)
            ).all()  # fmt: skip
        self._known_points = frozenset(row.id for row in rows)
        self._known_runs: list[list[str]] = []  # runs of point ids all in _known_points (_catch_up_points)
        # the element quantities' names as the same string objects as the assembly's keys are made of
        # (interned names, the topology's own element ids): its ~100,000 look-ups into the measurements
        # then compare keys by identity instead of string by string (~15 % of the assembly)
        own = {e["id"]: e["id"] for section in ASSEMBLED_SECTIONS for e in self.topology.get(section, [])}
        return [
            PointMapping(
                point_id,
                sys.intern(kind),
                own.get(element, element),
                sys.intern(quantity),
                sys.intern(end or "-"),
                Decimal(1) / scale if scale else Decimal(1),
                accuracy_percent=accuracy,
                resolution=resolution if resolution is not None else Decimal(0),
            )
            for point_id, kind, element, quantity, end, scale, accuracy, resolution, left_out in rows
            if not left_out
        ]

    def _point_index(self) -> PointIndex:
        """The assembled points indexed, once for as long as :attr:`points` stays the same list."""
        index = self._indexed
        if index is None or not index.of(self.points, ASSEMBLED_QUANTITIES):
            index = self._indexed = PointIndex(self.points, ASSEMBLED_QUANTITIES)
        return index

    def _held_points(self) -> tuple[list[str], str]:
        """The held registers' point ids (and as a JSON array), found once for as long as :attr:`points`
        stays the same list (a pass over every point: 118,000 at 10,000 buses)."""
        points, held = self.points, self._held
        if held is None or held[0] is not points or held[1] != len(points):
            ids = [p.point_id for p in points if p.quantity in HELD_QUANTITIES]
            held = self._held = (points, len(points), ids, json.dumps(ids))
        return held[2], held[3]

    def refresh_points(self) -> None:
        self.points = self._point_mappings()

    def _catch_up_points(self, readings: Iterable[StoredReading]) -> None:
        """Read the point mapping again when readings name a point it does not know: a device registered
        while the center runs (``carbonflow center load``; ingest refuses readings of unknown points, so
        a reading of a point not known here means one was registered since).  Cheap: only then."""
        known = self._known_points
        if not isinstance(readings, ReadingColumns):
            if not known.issuperset(r[0] for r in readings):
                self.refresh_points()
            return
        # by run of one time stamp, a run repeating an earlier one's ids looked at once, and a run of the
        # ids of one already found known (the last intervals': a collector sends the same points every
        # time) compared as a list instead of looking up every id
        checked = self._known_runs
        for run in readings.distinct_point_id_runs():
            if run in checked:
                continue
            if not known.issuperset(run):
                self.refresh_points()
                return
            checked.append(run)
            del checked[:-KNOWN_RUNS]

    def _window(self, end: datetime) -> tuple[datetime, datetime]:
        """Readings an interval is metered from: one interval on either side of it, so a counter read
        before a boundary still marks it and readings after each boundary bracket it."""
        span = timedelta(seconds=self.interval_s)
        return end - 2 * span, end + span

    def readings_for(self, end: datetime) -> ReadingColumns:
        low, high = self._window(end)
        held, held_json = self._held_points()
        with self.store.read() as connection:
            return window_readings(connection, low, high, low - HELD_MAX_AGE, held, held_json, self._runs)

    def readings_available(self, end: datetime) -> int:
        """How many readings the interval ending at ``end`` would be metered from now."""
        low, high = self._window(end)
        with self.store.read() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(Reading).where(Reading.ts >= low, Reading.ts <= high)
                ).scalar_one()
            )

    def counters_awaited(self, end: datetime) -> int:
        """Counter points read lately (since one interval before the interval ending at ``end``) of which
        no reading at or after ``end`` has arrived yet: the boundary values still on their way."""
        span = timedelta(seconds=self.interval_s)
        awaited = (
            select(Reading.point_id)
            .join(Point, Point.id == Reading.point_id)
            .where(Reading.ts > end - 2 * span, Reading.ts <= end + span)
            .where(Point.quantity.in_(COUNTER_QUANTITIES))
            .group_by(Reading.point_id)
            .having(func.max(Reading.ts) < end)
            .subquery()
        )
        with self.store.read() as connection:
            return int(connection.execute(select(func.count()).select_from(awaited)).scalar_one())

    def incomplete_intervals(self, since: datetime) -> dict[datetime, int]:
        """Intervals stored since ``since`` that were not metered from complete data, with the readings
        they were metered from — what a restarted loop must keep watching for late readings."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(Interval.ts, Interval.estimation).where(
                    Interval.ts >= since, Interval.level == self.level
                )
            ).all()
        return {
            utc(ts): int((estimation or {}).get("readings", 0))
            for ts, estimation in rows
            if not is_complete(estimation)
        }

    def _previous_for(self, end: datetime) -> dict[str, dict[str, float]]:
        before = end - timedelta(seconds=self.interval_s)
        return self._values_by_end.get(before, self.previous)

    def compute_interval(
        self,
        end: datetime,
        readings: Sequence[StoredReading],
        *,
        previous: Mapping[str, Mapping[str, float]] | None = None,
        losses: str | None = None,
        factors: Mapping[str, float] | None = None,
        discharge: Mapping[str, float] | None = None,
        with_origin: bool = True,
    ) -> Computed:
        """One interval from its readings, nothing stored: measurements -> snapshot -> engine -> result.

        The live loop (:meth:`meter_interval`) and the recomputation of history (metering/recompute.py)
        both meter through here.  ``previous``: the powers of the interval before (default: what this
        service metered last); ``losses``: the loss convention (default: the service's); ``factors``:
        generator id -> g/kWh replacing the assembled intensity (a corrected emission factor);
        ``discharge``: storage id -> g/kWh of its discharge (default: the carbon this service carried);
        ``with_origin=False``: ``computed.document`` without its origin part (stored packed from the engine's
        arrays all the same: :meth:`record_of`)."""
        self._catch_up_points(readings)
        data = measurements_for_interval(
            self._point_index(),
            readings,
            end - timedelta(seconds=self.interval_s),
            end,
            max_age_s=self.interval_s,
            held_max_age_s=HELD_MAX_AGE.total_seconds(),
            quantities=ASSEMBLED_QUANTITIES,
        )
        if discharge is None:
            discharge = {sid: state.discharge_intensity_g_per_kwh for sid, state in self.storage.items()}
        held = self._previous_for(end) if previous is None else previous
        assembled = assemble_snapshot(self.topology, data, held, discharge)
        if self.ties is not None:  # imports over cross-region ties at the neighbours' published intensities
            self.ties.apply(end, assembled)
        with_factors(assembled.snapshot, factors)
        computed = Computed(assembled, self._completeness(assembled), len(readings))
        if computed.completeness < self.min_completeness:
            computed.error = f"only {computed.completeness:.0%} of generators, loads and branches measured"
            return computed
        try:
            snapshot, document, result, origin, parts = interval_result(
                assembled.snapshot, losses or self.losses, with_origin=with_origin
            )
            bands = propagate(
                snapshot,
                input_uncertainty(snapshot, assembled),
                losses or self.losses,
                samples=self.uncertainty_samples,
                seed=int(end.timestamp()),
            )
        except SnapshotError as error:
            computed.error = str(error)
            return computed
        except ArithmeticError as error:  # the origin shares' system singular (an island of idle units)
            computed.error = f"origin of electricity not solvable: {error}"
            return computed
        computed.document, computed.engine = document, (result, origin, parts)
        computed.bands = {
            bus: (None if np.isnan(band) else round(float(band), 6))
            for bus, band in zip(snapshot.bus_ids, bands.bus_intensity_g_per_kwh)
        }
        computed.totals_band = {
            name: round(value, 6) for name, value in bands.totals.items() if np.isfinite(value)
        }
        computed.uncertainty = {
            "coverage_factor": bands.coverage_factor,
            "samples": bands.samples,
            "rejected_samples": bands.rejected,
            "intensity_g_per_kwh": computed.bands,
            "totals": computed.totals_band,
        }
        return computed

    def record_of(self, end: datetime, computed: Computed, *, complete: bool) -> IntervalRecord:
        """The stored form of a computed interval: its result rows, snapshot and estimation."""
        assembled = computed.assembled
        return interval_from_document(
            end,
            self.interval_s,
            computed.document or {},
            level=self.level,
            snapshot=assembled.snapshot,
            estimation={
                "completeness": computed.completeness,
                "complete": complete,
                "readings": computed.readings,
                "estimates": [e.as_dict() for e in assembled.estimates],
                "derived": [e.as_dict() for e in assembled.derived],
                "uncertainty": computed.uncertainty,
            },
            origin=(computed.document or {}).get("origin"),
            engine=computed.engine,
            # the element rows as columns from the engine's arrays (what recomputation stores), not as
            # ~30,000 dicts from the document at 10,000 buses
            columns=(
                None
                if computed.engine is None
                else element_columns(computed.engine[0].snapshot, computed.engine[0], self.interval_s)
            ),
        )

    def meter_interval(
        self, end: datetime, *, download_factors: bool = True, reason: str = "first metering"
    ) -> IntervalOutcome:
        with collection_paused():
            return self._meter_interval(end, download_factors, reason)

    def _meter_interval(self, end: datetime, download_factors: bool, reason: str) -> IntervalOutcome:
        readings = self.readings_for(end)
        # the origin is stored packed from the engine's arrays: its document is not made here
        computed = self.compute_interval(end, readings, with_origin=False)
        assembled = computed.assembled
        if computed.document is None:
            failed = IntervalOutcome(
                end, stored=False, estimates=len(assembled.estimates), completeness=computed.completeness,
                readings=len(readings), derived=len(assembled.derived), error=computed.error,
            )  # fmt: skip
            log.warning("interval ending %s not metered: %s", end.isoformat(), failed.error)
            return failed
        document = computed.document
        outcome = IntervalOutcome(
            end, True, document["totals"], len(assembled.estimates), 0, None,
            {b["id"]: b["intensity_g_per_kwh"] for b in document["buses"]}, len(assembled.derived),
            computed.completeness, 0, len(readings), computed.bands, computed.totals_band, readings,
        )  # fmt: skip
        record = self.record_of(end, computed, complete=outcome.complete)
        outcome.version = save_new_version(self.store, record, reason)
        self._values_by_end[end] = assembled.values
        for old in sorted(self._values_by_end)[:-KEEP_INTERVALS]:
            del self._values_by_end[old]
        if end >= max(self._values_by_end):
            self.previous = assembled.values
        if end not in self._carried:  # storage carbon moves on once per interval
            self._carried.add(end)
            self._carry_storage(assembled, document)
        if download_factors and outcome.version == 1:
            outcome.factors_queued = self.queue_factor_downloads(document, end)
        return outcome

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
