"""Interval results: saving the engine's output per interval, and querying / aggregating it.

Every result row carries the interval's amounts (``energy_kwh``, ``carbon_kg``), so aggregation over any
period is **energy-weighted**: intensity = Σ carbon / Σ energy (×1000 for g/kWh), never the mean of
intensities (a half-hour at 900 g/kWh and 10 MWh plus one at 100 g/kWh and 1 MWh is 827 g/kWh, not 500).

Time conventions: ``ts`` is the END of the interval.  Queries select intervals whose end lies in
``(start, end]`` — exactly the intervals inside ``[start, end)``.  Aggregation buckets an interval by its
START (``ts - interval_s``) in a fixed UTC offset (``utc_offset_minutes``; 480 for China, which keeps no
DST), so the 00:00–00:15 interval (ts 00:15) belongs to hour 00 and the last interval of January (ts
Feb 1 00:00) to January.  The bucket expression is the one per-dialect branch (``_bucket``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Integer, String, cast, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.engine import Store
from carbonflow.center.store.packed_origin import pack_origin_document, pack_origin_of
from carbonflow.center.store.schema import RESULT_MODELS, Bus, Interval, Load
from carbonflow.center.store.types import utc
from carbonflow.engine.document import OriginParts, document_hash, result_hash

if TYPE_CHECKING:
    from carbonflow.engine.cef import CefResult
    from carbonflow.engine.origin import Origin

Bucket = Literal["15min", "hour", "day", "month"]
GroupBy = Literal["element", "region", "industry", "voltage", "total"]
ElementKind = Literal["bus", "branch", "generator", "load"]
BUCKETS = ("15min", "hour", "day", "month")
KWH_PER_MWH = 1000.0


@dataclass
class IntervalRecord:
    """Everything stored for one interval: header fields and rows per element kind (column dicts)."""

    ts: datetime
    interval_s: int
    level: str = ""
    losses: str = "receiving"
    snapshot: dict[str, Any] | None = None
    estimation: dict[str, Any] | None = None
    totals: dict[str, Any] | None = None
    origin: dict[str, Any] | None = None  # stored packed (``origin_packed`` made from it) where it can be
    hash: str = ""  # the result hash (docs/tamper-evidence.md): "2:…" scheme 2, 64 hex digits scheme 1
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "bus" | "branch" | ... → rows
    # the same rows as columns (kind → column → values), when made from arrays (recomputation)
    columns: dict[str, dict[str, list[Any]]] | None = None
    # JSON columns already serialised ("origin", "snapshot" → text), written as they are
    texts: dict[str, str] | None = None
    # the scheme-1 hash of the same result, made only where it is compared with an interval stored under
    # scheme 1 (recomputation's "unchanged" test); never stored
    hash_v1: str | None = None
    # the origin shares packed (store/packed_origin.py), when made from the engine's arrays; stored in
    # ``origin_packed`` instead of ``origin``
    origin_packed: bytes | None = None

    def row_count(self) -> int:
        """Element rows of every kind."""
        if self.columns is not None:
            return sum(len(columns.get("element_id", ())) for columns in self.columns.values())
        return sum(len(rows) for rows in self.rows.values())

    def column_sum(self, kind: str, name: str) -> float:
        """Σ ``name`` over the element rows of ``kind`` (in row order)."""
        if self.columns is not None:
            return sum(self.columns.get(kind, {}).get(name, []))
        return sum(r[name] for r in self.rows.get(kind, []))


def interval_from_document(
    ts: datetime,
    interval_s: int,
    document: dict[str, Any],
    *,
    level: str = "",
    snapshot: dict[str, Any] | None = None,
    estimation: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
    engine: tuple[CefResult, Origin | None, OriginParts | None] | None = None,
    columns: dict[str, dict[str, list[Any]]] | None = None,
) -> IntervalRecord:
    """An interval from an engine result document (contract C1 output, rates held over the interval).
    ``engine``: the result, origin shares (and their ``origin_parts``) the document was made from, when
    the caller has them: the result hash is then made from their arrays (``result_hash``: the same value
    as ``document_hash`` of the document, without walking it); ``columns``: the element rows already made
    from those arrays (``IntervalRecord.columns``: the same values as the rows made here from the
    document), which are then not made."""
    record = IntervalRecord(
        ts=utc(ts),
        interval_s=interval_s,
        level=level,
        losses=document.get("losses", "receiving"),
        snapshot=snapshot,
        estimation=estimation,
        totals=document.get("totals", {}),
        origin=origin,
        hash=(
            document_hash(document, ts=ts, interval_s=interval_s)
            if engine is None
            else result_hash(*engine, ts=ts, interval_s=interval_s)
        ),
        columns=columns,
        origin_packed=(
            pack_origin_of(*engine)
            if engine is not None and engine[1] is not None and engine[2] is not None
            else None
        ),
    )
    if columns is None:
        record.rows = _document_rows(document, interval_s)
    return record


def _document_rows(document: dict[str, Any], interval_s: int) -> dict[str, list[dict[str, Any]]]:
    """The element rows of a result document by kind, as dicts."""
    hours = interval_s / 3600.0
    energy = lambda p_mw: p_mw * hours * KWH_PER_MWH  # noqa: E731  MW over the interval → kWh
    carbon = lambda t_per_h: t_per_h * hours * 1000.0  # noqa: E731  t/h over the interval → kg
    rows: dict[str, list[dict[str, Any]]] = {"bus": [], "branch": [], "generator": [], "load": []}
    for bus in document.get("buses", []):
        rows["bus"].append(
            {
                "element_id": bus["id"],
                "bus_id": bus["id"],
                "flux_mw": bus["flux_mw"],
                "intensity_g_per_kwh": bus["intensity_g_per_kwh"],
                "energy_kwh": energy(bus["flux_mw"]),
                "carbon_kg": energy(bus["flux_mw"]) * (bus["intensity_g_per_kwh"] or 0.0) / 1000.0,
                "load_mw": bus.get("load_mw", 0.0),
                "load_carbon_t_per_h": bus.get("load_carbon_t_per_h", 0.0),
            }
        )
    for branch in document.get("branches", []):
        rows["branch"].append(
            {
                "element_id": branch["id"],
                "bus_id": branch["from_bus"],
                "sending_bus": branch.get("sending_bus"),
                "intensity_g_per_kwh": branch.get("density_g_per_kwh"),
                "p_send_mw": branch["p_send_mw"],
                "p_recv_mw": branch["p_recv_mw"],
                "energy_kwh": energy(branch["p_send_mw"]),
                "carbon_kg": carbon(branch["carbon_send_t_per_h"]),
                "carbon_send_t_per_h": branch["carbon_send_t_per_h"],
                "carbon_recv_t_per_h": branch["carbon_recv_t_per_h"],
                "loss_carbon_t_per_h": branch["loss_carbon_t_per_h"],
                "loss_carbon_kg": carbon(branch["loss_carbon_t_per_h"]),
            }
        )
    for kind, plural in (("generator", "generators"), ("load", "loads")):
        for element in document.get(plural, []):
            p_mw, rate = element["p_mw"], element["carbon_t_per_h"]
            rows[kind].append(
                {
                    "element_id": element["id"],
                    "bus_id": element["bus"],
                    "p_mw": p_mw,
                    "carbon_t_per_h": rate,
                    "intensity_g_per_kwh": rate * 1000.0 / p_mw if p_mw else None,
                    "energy_kwh": energy(p_mw),
                    "carbon_kg": carbon(rate),
                }
            )
    return rows


def _origin_columns(record: IntervalRecord) -> tuple[dict[str, Any] | None, bytes | None]:
    """The ``origin`` (JSON) and ``origin_packed`` values of ``record``: packed whenever the document has a
    packed form (every document the engine makes), JSON only for one that has none."""
    packed = record.origin_packed if record.origin_packed is not None else pack_origin_document(record.origin)
    return (None, packed) if packed is not None else (record.origin, None)


def header_row(record: IntervalRecord) -> dict[str, Any]:
    """The ``intervals`` row of ``record`` (without its chain link): key, result, and the interval's sums."""
    totals = record.totals or {}
    hours = record.interval_s / 3600.0
    origin, origin_packed = _origin_columns(record)
    return {
        "ts": record.ts,
        "level": record.level,
        "interval_s": record.interval_s,
        "losses": record.losses,
        "hash": record.hash,
        "snapshot": record.snapshot,
        "estimation": record.estimation,
        "totals": totals,
        "origin": origin,
        "origin_packed": origin_packed,
        "generation_energy_kwh": record.column_sum("generator", "energy_kwh"),
        "load_energy_kwh": record.column_sum("load", "energy_kwh"),
        "generation_carbon_kg": totals.get("generation_carbon_t_per_h", 0.0) * hours * 1000.0,
        "load_carbon_kg": totals.get("load_carbon_t_per_h", 0.0) * hours * 1000.0,
        "loss_carbon_kg": totals.get("loss_carbon_t_per_h", 0.0) * hours * 1000.0,
        "created_at": datetime.now(UTC),
    }


# --- queries -------------------------------------------------------------------------------------------


def _region_clause(column, region: str):
    escaped = region.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(column == region, column.like(f"{escaped}/%", escape="\\"))


def _filtered(
    kind: ElementKind,
    columns: list,
    start: datetime,
    end: datetime,
    *,
    element_ids: list[str] | None,
    region: str | None,
    industry: str | None,
    voltage_kv: float | None,
    level: str | None,
    interval_s: int | None,
):
    model = RESULT_MODELS[kind]
    query = select(*columns).select_from(model).join(Bus, Bus.id == model.bus_id)
    if kind == "load":
        query = query.outerjoin(Load, Load.id == model.element_id)
    query = query.where(model.ts > start, model.ts <= end)
    if element_ids is not None:
        query = query.where(model.element_id.in_(element_ids))
    if region is not None:
        query = query.where(_region_clause(Bus.region, region))
    if industry is not None:
        query = query.where(_industry_column(kind) == industry)
    if voltage_kv is not None:
        query = query.where(Bus.voltage_kv == voltage_kv)
    if level is not None:
        query = query.where(model.level == level)
    if interval_s is not None:
        query = query.where(model.interval_s == interval_s)
    return query, model


def _industry_column(kind: ElementKind):
    """A user's industry is on its load; buses of other kinds carry their own (or none)."""
    return func.coalesce(Load.industry, Bus.industry) if kind == "load" else Bus.industry


def interval_results(
    target: Store | Session | Connection,
    kind: ElementKind,
    start: datetime,
    end: datetime,
    *,
    element_ids: list[str] | None = None,
    region: str | None = None,
    industry: str | None = None,
    voltage_kv: float | None = None,
    level: str | None = None,
    interval_s: int | None = None,
) -> list[dict[str, Any]]:
    """Result rows of one element kind (all columns plus the bus's region), by ts then element."""
    model = RESULT_MODELS[kind]
    query, model = _filtered(
        kind,
        [*model.__table__.c, Bus.region.label("region"), _industry_column(kind).label("industry")],
        start,
        end,
        element_ids=element_ids,
        region=region,
        industry=industry,
        voltage_kv=voltage_kv,
        level=level,
        interval_s=interval_s,
    )
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(model.ts, model.element_id))]


def _bucket(dialect: str, model, bucket: Bucket, utc_offset_minutes: int):
    """SQL expression: the bucket (local wall time, no zone) the interval's START falls in."""
    offset = int(utc_offset_minutes)
    if dialect == "postgresql":
        local = (
            func.timezone("UTC", model.ts)
            - model.interval_s * literal_column("INTERVAL '1 second'")
            + literal_column(f"INTERVAL '{offset} minutes'")
        )
        if bucket == "15min":
            return func.date_bin(
                literal_column("INTERVAL '15 minutes'"), local, literal_column("TIMESTAMP '2000-01-01'")
            )
        return func.date_trunc(bucket, local)
    # SQLite: date functions read the stored ISO text; modifiers shift to the interval start, local time
    to_start = literal("-") + cast(model.interval_s, String) + literal(" seconds")
    modifiers = (to_start, f"{offset:+d} minutes")
    if bucket == "15min":
        epoch = cast(func.strftime("%s", model.ts, *modifiers), Integer)
        return func.datetime((epoch // 900) * 900, "unixepoch")
    pattern = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00", "month": "%Y-%m-01 00:00:00"}[bucket]
    return func.strftime(pattern, model.ts, *modifiers)


@dataclass(frozen=True)
class Aggregate:
    """One bucket of one group: sums, and the energy-weighted intensity Σ carbon / Σ energy."""

    bucket: datetime  # start of the bucket, in the requested UTC offset
    key: str | float | None  # element id, region, industry, voltage (None for "total")
    energy_kwh: float
    carbon_kg: float
    intervals: int

    @property
    def intensity_g_per_kwh(self) -> float | None:
        return self.carbon_kg * 1000.0 / self.energy_kwh if self.energy_kwh else None


def aggregate(
    target: Store | Session | Connection,
    kind: ElementKind,
    bucket: Bucket,
    start: datetime,
    end: datetime,
    *,
    group_by: GroupBy = "element",
    region_depth: int | None = None,
    element_ids: list[str] | None = None,
    region: str | None = None,
    industry: str | None = None,
    voltage_kv: float | None = None,
    level: str | None = None,
    interval_s: int | None = None,
    utc_offset_minutes: int = 0,
) -> list[Aggregate]:
    """Energy-weighted aggregation of one element kind into ``bucket`` periods, grouped by ``group_by``.

    The sums are computed in SQL; ``region_depth`` (1 = province, 2 = city, 3 = county) rolls region
    groups up by path prefix afterwards — exact, since sums add.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {BUCKETS}, not {bucket!r}")
    model = RESULT_MODELS[kind]
    with connection_of(target, write=False) as connection:
        bucket_column = _bucket(connection.dialect.name, model, bucket, utc_offset_minutes).label("bucket")
        key_column = {
            "element": model.element_id,
            "region": Bus.region,
            "industry": _industry_column(kind),
            "voltage": Bus.voltage_kv,
            "total": literal(None, String),
        }[group_by].label("key")
        query, model = _filtered(
            kind,
            [
                bucket_column,
                key_column,
                func.sum(model.energy_kwh).label("energy_kwh"),
                func.sum(model.carbon_kg).label("carbon_kg"),
                func.count(func.distinct(model.ts)).label("intervals"),
            ],
            start,
            end,
            element_ids=element_ids,
            region=region,
            industry=industry,
            voltage_kv=voltage_kv,
            level=level,
            interval_s=interval_s,
        )
        query = query.group_by(bucket_column, key_column).order_by(bucket_column, key_column)
        rows = connection.execute(query).all()
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    result = [
        Aggregate(
            _bucket_time(row.bucket, zone),
            row.key,
            float(row.energy_kwh or 0),
            float(row.carbon_kg or 0),
            int(row.intervals),
        )
        for row in rows
    ]
    if group_by == "region" and region_depth is not None:
        result = _roll_up_regions(result, region_depth)
    return result


def _bucket_time(value: Any, zone: timezone) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=zone)


def _roll_up_regions(rows: list[Aggregate], depth: int) -> list[Aggregate]:
    sums: dict[tuple[datetime, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for row in rows:
        region = "/".join(str(row.key).split("/")[:depth])
        entry = sums[(row.bucket, region)]
        entry[0] += row.energy_kwh
        entry[1] += row.carbon_kg
        entry[2] = max(entry[2], row.intervals)
    return [Aggregate(b, r, e, c, int(n)) for (b, r), (e, c, n) in sorted(sums.items())]


def aggregate_totals(
    target: Store | Session | Connection,
    bucket: Bucket,
    start: datetime,
    end: datetime,
    *,
    level: str | None = None,
    utc_offset_minutes: int = 0,
) -> list[dict[str, Any]]:
    """Whole-grid sums per bucket from the interval headers: generation, load and loss carbon and energy."""
    with connection_of(target, write=False) as connection:
        bucket_column = _bucket(connection.dialect.name, Interval, bucket, utc_offset_minutes).label("bucket")
        query = (
            select(
                bucket_column,
                func.sum(Interval.generation_energy_kwh).label("generation_energy_kwh"),
                func.sum(Interval.load_energy_kwh).label("load_energy_kwh"),
                func.sum(Interval.generation_carbon_kg).label("generation_carbon_kg"),
                func.sum(Interval.load_carbon_kg).label("load_carbon_kg"),
                func.sum(Interval.loss_carbon_kg).label("loss_carbon_kg"),
                func.count().label("intervals"),
            )
            .where(Interval.ts > start, Interval.ts <= end)
            .group_by(bucket_column)
            .order_by(bucket_column)
        )
        if level is not None:
            query = query.where(Interval.level == level)
        rows = connection.execute(query).all()
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["bucket"] = _bucket_time(row.bucket, zone)
        energy = item["generation_energy_kwh"] or 0.0
        item["generation_intensity_g_per_kwh"] = (
            item["generation_carbon_kg"] * 1000.0 / energy if energy else None
        )
        out.append(item)
    return out


def incomplete_by_bucket(
    target: Store | Session | Connection,
    bucket: Bucket,
    start: datetime,
    end: datetime,
    *,
    level: str | None = None,
    utc_offset_minutes: int = 0,
) -> dict[datetime, int]:
    """Per bucket (start, in the requested offset), how many of its intervals were metered from
    incomplete data (an input estimated: ``estimation.complete`` false) — what a chart draws differently."""
    with connection_of(target, write=False) as connection:
        bucket_column = _bucket(connection.dialect.name, Interval, bucket, utc_offset_minutes).label("bucket")
        query = (
            select(bucket_column, func.count().label("incomplete"))
            .where(Interval.ts > start, Interval.ts <= end)
            .where(Interval.estimation["complete"].as_boolean().is_(False))
            .group_by(bucket_column)
        )
        if level is not None:
            query = query.where(Interval.level == level)
        rows = connection.execute(query).all()
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    return {_bucket_time(row.bucket, zone): int(row.incomplete) for row in rows}
