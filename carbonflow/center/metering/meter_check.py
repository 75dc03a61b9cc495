"""Meter-vs-platform comparison for consumers' electric-carbon meters (电碳表).

The platform knows which carbon factor it downloaded to each meter and from when (acknowledged
``set_carbon_factor`` commands: params ``factor``/``factors``, ``start``, ``interval_s``, and the time
the collector finished the download) and it reads the meter's energy and carbon registers (the same
poll stamps both with one ``ts``).  What the carbon register should show at a later reading is

    expected = shown at the base reading + Σ ΔkWh × factor in force

A factor is in force from ``max(start, finished)``: a meter applies a schedule from its start, but
energy counted before the download reached it stays at the old factor (see
``carbonflow.devices.carbon_meter``).  Between two readings with a factor change inside, the energy at
the change is interpolated linearly in time and the error this can make (at most ΔkWh × the larger
side's share × |Δfactor|) is added to
the check's ``uncertainty_kg``, as is the energy register's own resolution.  Both registers show
floored values, so an honest meter agrees within one carbon resolution step: a check is a
``mismatch`` when at any compared reading ``|shown − expected| > tolerance + uncertainty`` (tolerance:
the carbon register's resolution, read from the digits the meter shows, e.g. 0.01 kg, unless
configured).  Too few readings, an energy register that went backwards, or no known factor give
``incomplete``.

Each check also keeps the comparison step by step (``intervals``: from one paired reading to the next —
the frozen readings at interval boundaries — the energy, the carbon the register added, the carbon the
platform computes for that energy and the factor in force, the difference and what is allowed), and
:func:`meter_summary` cumulates the steps per meter.  Values are compared on the primary side: a
register behind CT/VT is multiplied back by the point's ``1/scale`` (CT x VT), and its resolution with
it (0.01 kg x 倍率 15 000 = 150 kg), so an honest meter agrees within its register's resolution.

The pure functions (:func:`compare`, :func:`downloads_from_commands`, :func:`pair_samples`) take plain
values; :func:`check_meters` is the small store query around them that the maintenance scheduler runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from carbonflow.center.store import Store
from carbonflow.center.store.row_scope import RowScope
from carbonflow.center.store.schema import Command, Device, Interval, MeterCheck, Point, Reading

CARBON_METER_KINDS = ("carbon_meter",)
STORED_PLACES = Decimal("0.000001")  # expected / uncertainty are stored to 1 mg


@dataclass(frozen=True)
class FactorDownload:
    effective_from: datetime
    factor_kg_per_kwh: Decimal
    command_id: str | None = None


@dataclass(frozen=True)
class Sample:
    """One poll of the meter: its energy and carbon registers at the same ``ts`` (in kWh and kg)."""

    ts: datetime
    energy_kwh: Decimal
    carbon_kg: Decimal


@dataclass
class CheckResult:
    device_id: str
    status: str  # ok | mismatch | incomplete
    start_ts: datetime | None = None
    end_ts: datetime | None = None
    energy_kwh: Decimal | None = None
    expected_kg: Decimal | None = None
    shown_kg: Decimal | None = None
    deviation_kg: Decimal | None = None
    resolution_kg: Decimal | None = None
    uncertainty_kg: Decimal | None = None
    factors: list[dict[str, Any]] = field(default_factory=list)
    detail: str | None = None
    carbon_point: str = ""
    energy_point: str = ""
    intervals: list[dict[str, Any]] = field(default_factory=list)  # per step between paired readings

    def row(self, now: datetime) -> dict[str, Any]:
        values = asdict(self)
        for name in ("expected_kg", "deviation_kg", "uncertainty_kg"):
            if values[name] is not None:
                values[name] = Decimal(values[name]).quantize(STORED_PLACES)
        return {**values, "created_at": now}


# --- pure arithmetic --------------------------------------------------------------------------------


def resolution_of(values: Iterable[Decimal]) -> Decimal | None:
    """The finest step among the values as the meter shows them ("12.34" -> 0.01)."""
    exponents = [v.as_tuple().exponent for v in values if v is not None and v.is_finite()]
    return Decimal(1).scaleb(min(exponents)) if exponents else None  # type: ignore[type-var]


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(str(text))
    return moment.astimezone(UTC) if moment.tzinfo else None


def downloads_from_commands(commands: Iterable[Mapping[str, Any]]) -> list[FactorDownload]:
    """Acknowledged ``set_carbon_factor`` commands -> factors in force from when, oldest first.

    A schedule of several ``factors`` every ``interval_s`` becomes one entry per factor.  The moment a
    download reached the meter is taken as the command's ``finished`` time (``updated_at`` of an
    acknowledged command)."""
    found: list[FactorDownload] = []
    for command in commands:
        if command.get("kind") != "set_carbon_factor" or command.get("status") != "acknowledged":
            continue
        params = command.get("params") or {}
        raw = params.get("factors") or ([params["factor"]] if "factor" in params else [])
        finished = command.get("updated_at") or command.get("finished_at")
        start = _parse_time(params.get("start")) or finished
        if not raw or start is None or finished is None:
            continue
        step = timedelta(seconds=int(params.get("interval_s") or 0))
        for index, factor in enumerate(raw):
            begins = start + step * index if step else start
            found.append(FactorDownload(max(begins, finished), Decimal(str(factor)), command.get("id")))
    found.sort(key=lambda d: d.effective_from)
    return found


def pair_samples(
    energy: Iterable[tuple[datetime, Decimal | None]], carbon: Iterable[tuple[datetime, Decimal | None]]
) -> tuple[list[Sample], int]:
    """Energy and carbon readings with the same ts, oldest first; and how many readings had no partner
    (or no value)."""
    energy_at = {ts: value for ts, value in energy if value is not None}
    carbon_at = {ts: value for ts, value in carbon if value is not None}
    common = sorted(energy_at.keys() & carbon_at.keys())
    unpaired = len(energy_at) + len(carbon_at) - 2 * len(common)
    return [Sample(ts, energy_at[ts], carbon_at[ts]) for ts in common], unpaired


def _factor_at(downloads: Sequence[FactorDownload], moment: datetime) -> Decimal | None:
    factor = None
    for download in downloads:
        if download.effective_from > moment:
            break
        factor = download.factor_kg_per_kwh
    return factor


def compare(
    samples: Sequence[Sample],
    downloads: Sequence[FactorDownload],
    *,
    device_id: str = "",
    resolution_kg: Decimal | None = None,
    energy_resolution_kwh: Decimal | None = None,
    tolerance_kg: Decimal | None = None,
) -> CheckResult:
    """Compare the meter's carbon register with the platform's sum from the first sample on."""
    samples = sorted(samples, key=lambda s: s.ts)
    downloads = sorted(downloads, key=lambda d: d.effective_from)
    notes: list[str] = []
    if downloads:
        known = [s for s in samples if s.ts >= downloads[0].effective_from]
        if len(known) < len(samples):
            notes.append(f"{len(samples) - len(known)} readings before the first known factor not compared")
        samples = known
    if len(samples) < 2 or not downloads:
        reason = "no acknowledged factor download" if not downloads else "fewer than two paired readings"
        return CheckResult(
            device_id,
            "incomplete",
            samples[0].ts if samples else None,
            samples[-1].ts if samples else None,
            detail="; ".join([reason, *notes]),
        )
    if resolution_kg is None:
        resolution_kg = resolution_of(s.carbon_kg for s in samples) or Decimal("0.01")
    if energy_resolution_kwh is None:
        energy_resolution_kwh = resolution_of(s.energy_kwh for s in samples) or Decimal(0)
    resolution, energy_resolution = resolution_kg, energy_resolution_kwh
    tolerance = tolerance_kg if tolerance_kg is not None else resolution

    base = samples[0]
    expected = base.carbon_kg
    energy_total = Decimal(0)
    interpolation = Decimal(0)
    factor_steps = Decimal(0)  # Σ|Δfactor| over the span: how much the energy registers' flooring matters
    first_factor = _factor_at(downloads, base.ts)
    assert first_factor is not None  # samples start at or after the first download
    used = [{"from": base.ts, "factor": str(first_factor)}]
    compared = base
    status, worst, worst_excess = "ok", None, Decimal("-Infinity")
    steps: list[dict[str, Any]] = []
    for previous, sample in zip(samples, samples[1:]):
        step_base, step_interpolation, step_factor_steps = expected, interpolation, factor_steps
        delta = sample.energy_kwh - previous.energy_kwh
        if delta < 0:
            status = "incomplete"
            notes.append(f"energy register went backwards at {sample.ts.isoformat()}: compared up to there")
            break
        changes = [d for d in downloads if previous.ts < d.effective_from < sample.ts]
        factor = _factor_at(downloads, previous.ts)
        if not changes:
            expected += delta * factor  # type: ignore[operator]
        else:
            span = Decimal(str((sample.ts - previous.ts).total_seconds()))
            at, energy_at = previous.ts, previous.energy_kwh
            for change in changes:
                share = Decimal(str((change.effective_from - previous.ts).total_seconds())) / span
                energy_then = previous.energy_kwh + delta * share
                expected += (energy_then - energy_at) * factor  # type: ignore[operator]
                # the meter's energy at the change lies anywhere between the two readings
                interpolation += delta * max(share, 1 - share) * abs(change.factor_kg_per_kwh - factor)  # type: ignore[operator]
                factor_steps += abs(change.factor_kg_per_kwh - factor)  # type: ignore[operator]
                at, energy_at, factor = change.effective_from, energy_then, change.factor_kg_per_kwh
                used.append({"from": at, "factor": str(factor)})
            expected += (sample.energy_kwh - energy_at) * factor
        # a change exactly at a reading is exact: only the energy register's flooring enters
        for exact in (d for d in downloads if d.effective_from == sample.ts):
            factor_steps += abs(exact.factor_kg_per_kwh - (factor or exact.factor_kg_per_kwh))
            used.append({"from": exact.effective_from, "factor": str(exact.factor_kg_per_kwh)})
        energy_total += delta
        compared = sample
        last_factor = _factor_at(downloads, sample.ts) or Decimal(0)
        uncertainty = interpolation + energy_resolution * (first_factor + last_factor + factor_steps)
        deviation = sample.carbon_kg - expected
        excess = abs(deviation) - (tolerance + uncertainty)
        if excess > worst_excess:
            worst_excess, worst = excess, (sample.ts, deviation)
        if excess > 0 and status == "ok":
            status = "mismatch"
        step_uncertainty = (interpolation - step_interpolation) + energy_resolution * (
            (_factor_at(downloads, previous.ts) or Decimal(0))
            + last_factor
            + factor_steps
            - step_factor_steps
        )
        step = _step(previous, sample, delta, expected - step_base, tolerance + step_uncertainty)
        step.update(
            cumulated_deviation_kg=_text(deviation), cumulated_status="mismatch" if excess > 0 else "ok"
        )
        steps.append(step)
    if compared is base:
        return CheckResult(device_id, "incomplete", base.ts, base.ts, detail="; ".join(notes))
    last_factor = _factor_at(downloads, compared.ts) or Decimal(0)
    uncertainty = interpolation + energy_resolution * (first_factor + last_factor + factor_steps)
    if status == "mismatch" and worst is not None:
        notes.insert(
            0,
            f"largest difference {worst[1]:+f} kg at {worst[0].isoformat()} "
            f"(allowed ±{tolerance + uncertainty:f} kg)",
        )
    return CheckResult(
        device_id,
        status,
        base.ts,
        compared.ts,
        energy_total,
        expected,
        compared.carbon_kg,
        compared.carbon_kg - expected,
        resolution,
        uncertainty,
        [{"from": u["from"].isoformat(), "factor": u["factor"]} for u in used],
        "; ".join(notes) or None,
        intervals=steps,
    )


def _step(previous: Sample, sample: Sample, energy: Decimal, computed: Decimal, allowed: Decimal) -> dict:
    """One step of a check (JSON-ready): what the register added vs what the platform computed."""
    shown = sample.carbon_kg - previous.carbon_kg
    deviation = shown - computed
    status = "mismatch" if abs(deviation) > allowed else "ok"
    return {
        "start": previous.ts.isoformat(),
        "end": sample.ts.isoformat(),
        "energy_kwh": _text(energy),
        "shown_kg": _text(shown),
        "computed_kg": _text(computed),
        "deviation_kg": _text(deviation),
        "allowed_kg": _text(allowed),
        "status": status,
    }


def _text(value: Decimal) -> str:
    return format(value.quantize(STORED_PLACES).normalize(), "f")


# --- the store around it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterPoints:
    """A meter's energy and carbon points; ``*_scale``: primary value x scale = register value (1/(CT x
    VT) on the secondary side); ``*_resolution``: the register's last digit (None: read from the digits)."""

    device_id: str
    energy_point: str
    carbon_point: str
    energy_scale: Decimal
    carbon_scale: Decimal
    energy_resolution: Decimal | None = None
    carbon_resolution: Decimal | None = None

    @property
    def primary_resolutions(self) -> tuple[Decimal | None, Decimal | None]:
        """(energy kWh, carbon kg) resolutions on the primary side."""
        energy, carbon = self.energy_resolution, self.carbon_resolution
        return (
            None if energy is None else energy / self.energy_scale,
            None if carbon is None else carbon / self.carbon_scale,
        )


def carbon_meters(store: Store, devices: Sequence[str] | None = None) -> list[MeterPoints]:
    """Consumers' electric-carbon meters with their import-energy and carbon points (not the meters
    whose secondary-side values cannot be brought to primary: see ``Device.metrology_error``)."""
    query = (
        select(Device.id, Point.id, Point.quantity, Point.scale, Point.resolution)
        .join(Point, Point.device_id == Device.id)
        .where(
            Device.kind.in_(CARBON_METER_KINDS),
            Device.metrology_error.is_(None),
            Point.element_kind == "load",
            Point.quantity.in_(("import_energy_kwh", "carbon_kg")),
        )
        .order_by(Device.id, Point.id)
    )
    if devices:
        query = query.where(Device.id.in_(list(devices)))
    found: dict[str, dict[str, tuple[str, Decimal, Decimal | None]]] = {}
    with store.read() as connection:
        for device_id, point_id, quantity, scale, resolution in connection.execute(query):
            found.setdefault(device_id, {}).setdefault(quantity, (point_id, scale or Decimal(1), resolution))
    meters = []
    for device, points in found.items():
        if "import_energy_kwh" in points and "carbon_kg" in points:
            energy, energy_scale, energy_resolution = points["import_energy_kwh"]
            carbon, carbon_scale, carbon_resolution = points["carbon_kg"]
            meters.append(
                MeterPoints(
                    device, energy, carbon, energy_scale, carbon_scale, energy_resolution, carbon_resolution
                )
            )
    return meters


def _readings(store: Store, point: str, start: datetime, end: datetime, scale: Decimal):
    with store.read() as connection:
        rows = connection.execute(
            select(Reading.ts, Reading.value).where(
                Reading.point_id == point,
                Reading.ts >= start,
                Reading.ts <= end,
                Reading.quality != "invalid",
            )
        ).all()
    return [(ts, None if value is None else value / scale) for ts, value in rows]


def _commands(store: Store, device_id: str) -> list[dict[str, Any]]:
    with store.read() as connection:
        rows = connection.execute(
            select(Command.__table__).where(
                Command.device_id == device_id, Command.kind == "set_carbon_factor"
            )
        ).all()
    return [dict(row._mapping) for row in rows]


def check_meter(
    store: Store,
    meter: MeterPoints,
    start: datetime,
    end: datetime,
    *,
    lookback: timedelta = timedelta(hours=1),
    tolerance_kg: Decimal | None = None,
) -> CheckResult:
    """Compare over ``(start, end]`` from the last paired reading at or before ``start`` (the base)."""
    commands = _commands(store, meter.device_id)
    pending = [c["created_at"] for c in commands if c["status"] in ("queued", "sent")]
    cut = min([end, *pending])  # a download not yet answered: its effect is unknown after it was queued
    energy = _readings(store, meter.energy_point, start - lookback, cut, meter.energy_scale)
    carbon = _readings(store, meter.carbon_point, start - lookback, cut, meter.carbon_scale)
    samples, unpaired = pair_samples(energy, carbon)
    before = [s for s in samples if s.ts <= start]
    samples = before[-1:] + [s for s in samples if s.ts > start]
    energy_resolution, carbon_resolution = meter.primary_resolutions
    result = compare(
        samples,
        downloads_from_commands(commands),
        device_id=meter.device_id,
        resolution_kg=carbon_resolution,
        energy_resolution_kwh=energy_resolution,
        tolerance_kg=tolerance_kg,
    )
    if unpaired:
        note = f"{unpaired} readings without a partner reading of the other register"
        result.detail = f"{result.detail}; {note}" if result.detail else note
    result.carbon_point, result.energy_point = meter.carbon_point, meter.energy_point
    return result


def save_checks(store: Store, results: Iterable[CheckResult], now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    rows = [r.row(now) for r in results if r.start_ts is not None and r.end_ts is not None]
    if rows:
        with store.write() as connection:
            connection.execute(MeterCheck.__table__.insert(), rows)
    return len(rows)


def check_meters(
    store: Store,
    until: datetime | None = None,
    *,
    devices: Sequence[str] | None = None,
    tolerance_kg: Decimal | None = None,
    save: bool = True,
) -> list[CheckResult]:
    """Each meter from where its last check ended (or its first download) up to ``until`` (default: the
    latest metered interval, so the simulated clock of the demo and wall time both work)."""
    with store.read() as connection:
        until = until or connection.execute(select(func.max(Interval.ts))).scalar_one_or_none()
        latest_checks = select(MeterCheck.device_id, func.max(MeterCheck.end_ts)).group_by(
            MeterCheck.device_id
        )
        checked = {device: end for device, end in connection.execute(latest_checks)}
    if until is None:
        return []
    results = []
    for meter in carbon_meters(store, devices):
        downloads = downloads_from_commands(_commands(store, meter.device_id))
        start = checked.get(meter.device_id) or (downloads[0].effective_from if downloads else None)
        if start is None or start >= until:
            continue
        result = check_meter(store, meter, start, until, tolerance_kg=tolerance_kg)
        if result.end_ts is not None and result.end_ts > start:
            results.append(result)
    if save:
        save_checks(store, results)
    return results


def list_checks(
    store: Store,
    *,
    device: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: str | None = None,
    scope: RowScope | None = None,
) -> list[dict[str, Any]]:
    """Stored checks, newest first; ``scope``: those of the meters in a user's region."""
    query = select(MeterCheck.__table__).order_by(MeterCheck.end_ts.desc(), MeterCheck.id.desc())
    if scope is not None:
        query = scope.by_device(query, MeterCheck.device_id)
    if device is not None:
        query = query.where(MeterCheck.device_id == device)
    if start is not None:
        query = query.where(MeterCheck.end_ts >= start)
    if end is not None:
        query = query.where(MeterCheck.end_ts < end)
    if status is not None:
        query = query.where(MeterCheck.status == status)
    with store.read() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def meter_summary(
    store: Store, *, device: str | None = None, scope: RowScope | None = None
) -> list[dict[str, Any]]:
    """Per meter, cumulated over every stored check's steps: energy, the carbon the register added, the
    carbon the platform computed, their difference, the largest allowance of a step, and how many steps
    (and checks) did not agree; with the latest check's status and end."""
    summaries: dict[str, dict[str, Any]] = {}
    for row in reversed(list_checks(store, device=device, scope=scope)):  # oldest first
        entry = summaries.setdefault(
            row["device_id"],
            {
                "device_id": row["device_id"],
                "energy_kwh": Decimal(0),
                "shown_kg": Decimal(0),
                "computed_kg": Decimal(0),
                "steps": 0,
                "mismatched_steps": 0,
                "checks": 0,
                "mismatched_checks": 0,
                "max_allowed_kg": Decimal(0),
            },
        )
        entry["checks"] += 1
        entry["mismatched_checks"] += row["status"] == "mismatch"
        entry.update(
            latest_status=row["status"], latest_end=row["end_ts"], resolution_kg=row["resolution_kg"]
        )
        for step in row.get("intervals") or []:
            entry["steps"] += 1
            entry["mismatched_steps"] += step["status"] != "ok"
            for name in ("energy_kwh", "shown_kg", "computed_kg"):
                entry[name] += Decimal(step[name])
            entry["max_allowed_kg"] = max(entry["max_allowed_kg"], Decimal(step["allowed_kg"]))
    for entry in summaries.values():
        entry["deviation_kg"] = entry["shown_kg"] - entry["computed_kg"]
    return sorted(summaries.values(), key=lambda e: e["device_id"])
