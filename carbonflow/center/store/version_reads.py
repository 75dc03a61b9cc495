"""Reading the versions of the interval results (store/result_versions.py): one interval as of a
version, the versions a period's results come from, and the diff of two versions per bus, per user and
in total (docs/recompute.md).

The result of an interval *as of version v* is its newest result whose version is ≤ v: the current one
(``intervals`` and the result tables) when its ``result_version`` is ≤ v, else the newest archived one:
its header in ``archived_intervals``, its element rows packed in that header's ``element_rows``
(store/archived_rows.py) or, archived before that format, in ``archived_results``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from carbonflow.center.store.access import Target, connection_of
from carbonflow.center.store.archived_rows import unpack_rows
from carbonflow.center.store.intervals import HEADER_COLUMNS
from carbonflow.center.store.result_versions import (
    ARCHIVED_COLUMNS,
    HEADER_SUMS,
    ArchivedInterval,
    ArchivedResult,
    result_version_of,
)
from carbonflow.center.store.schema import RESULT_MODELS, Interval, Load
from carbonflow.center.store.types import utc


def header_as_of(target: Target, ts: datetime, version: int, level: str = "") -> dict[str, Any] | None:
    """The header of the interval ending at ``ts`` as of ``version`` (its newest result ≤ version), with
    ``result_version``; None when the interval had no result then."""
    ts = utc(ts)
    with connection_of(target, write=False) as connection:
        row = connection.execute(
            select(*HEADER_COLUMNS, Interval.estimation).where(Interval.ts == ts, Interval.level == level)
        ).first()
        if row is not None and result_version_of(row.estimation) <= version:
            header = dict(row._mapping)
            header["result_version"] = result_version_of(row.estimation)
            header["current"] = True
            return header
        table = ArchivedInterval.__table__
        row = connection.execute(
            select(*(column for column in table.c if column.name != "element_rows"))
            .where(table.c.ts == ts, table.c.level == level, table.c.version <= version)
            .order_by(table.c.version.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    header = dict(row._mapping)
    header["result_version"] = header.pop("version")
    header["current"] = False
    return header


def archived_rows(target: Target, kind: str, header: dict[str, Any]) -> list[dict[str, Any]]:
    """The element rows of an archived version's interval (``header`` from :func:`header_as_of`)."""
    headers = ArchivedInterval.__table__
    with connection_of(target, write=False) as connection:
        packed = connection.execute(
            select(headers.c.element_rows).where(
                headers.c.version == header["result_version"],
                headers.c.ts == header["ts"],
                headers.c.level == header["level"],
                headers.c.interval_s == header["interval_s"],
            )
        ).scalar_one_or_none()
        if packed is not None:
            return sorted(unpack_rows(packed).get(kind, []), key=lambda row: row["element_id"])
        table = ArchivedResult.__table__
        rows = connection.execute(
            select(*(table.c[name] for name in ARCHIVED_COLUMNS))
            .where(
                table.c.version == header["result_version"],
                table.c.ts == header["ts"],
                table.c.level == header["level"],
                table.c.interval_s == header["interval_s"],
                table.c.kind == kind,
            )
            .order_by(table.c.element_id)
        ).all()
    return [dict(row._mapping) for row in rows]


def versions_in(target: Target, start: datetime, end: datetime, level: str | None = None) -> list[int]:
    """The result versions of the current results of the intervals ending in ``(start, end]``."""
    column = Interval.estimation["result_version"].as_integer()
    query = select(func.coalesce(column, 0)).where(Interval.ts > start, Interval.ts <= end).distinct()
    if level is not None:
        query = query.where(Interval.level == level)
    with connection_of(target, write=False) as connection:
        return sorted(int(v) for (v,) in connection.execute(query))


def _sources(connection: Connection, version: int, start: datetime, end: datetime, level: str):
    """Per interval ending in ``(start, end]``: where its result as of ``version`` is — ``"current"``,
    an archived version number, or absent — as sorted ``(ts, source)`` pairs."""
    column = func.coalesce(Interval.estimation["result_version"].as_integer(), 0)
    current = {
        utc(ts): int(v)
        for ts, v in connection.execute(
            select(Interval.ts, column).where(
                Interval.ts > start, Interval.ts <= end, Interval.level == level
            )
        )
    }
    table = ArchivedInterval.__table__
    archived: dict[datetime, int] = {}
    for ts, v in connection.execute(
        select(table.c.ts, func.max(table.c.version))
        .where(table.c.ts > start, table.c.ts <= end, table.c.level == level, table.c.version <= version)
        .group_by(table.c.ts)
    ):
        archived[utc(ts)] = int(v)
    out: list[tuple[datetime, Any]] = []
    for ts in sorted(set(current) | set(archived)):
        if ts in current and current[ts] <= version:
            out.append((ts, "current"))
        elif ts in archived:
            out.append((ts, archived[ts]))
    return out


def _runs(pairs: Sequence[tuple[datetime, Any]]) -> Iterable[tuple[Any, datetime, datetime]]:
    """Consecutive intervals with the same source, as ``(source, first ts, last ts)``."""
    run: list[Any] = []
    for ts, source in pairs:
        if run and run[0] == source:
            run[2] = ts
        else:
            if run:
                yield tuple(run)
            run = [source, ts, ts]
    if run:
        yield tuple(run)


def _sums(connection: Connection, kind: str, source: Any, first: datetime, last: datetime, level: str):
    """``(element_id, bus_id, Σ energy, Σ carbon)`` of ``kind`` over the intervals ``[first, last]`` of
    ``source`` (``"current"`` or an archived version: its packed rows and any in ``archived_results``)."""
    if source == "current":
        table = RESULT_MODELS[kind].__table__
        query = select(
            table.c.element_id, table.c.bus_id, func.sum(table.c.energy_kwh), func.sum(table.c.carbon_kg)
        )
    else:
        table = ArchivedResult.__table__
        query = select(
            table.c.element_id, table.c.bus_id, func.sum(table.c.energy_kwh), func.sum(table.c.carbon_kg)
        ).where(table.c.version == source, table.c.kind == kind)
    query = query.where(table.c.ts >= first, table.c.ts <= last, table.c.level == level).group_by(
        table.c.element_id, table.c.bus_id
    )
    rows = connection.execute(query).all()
    if source == "current":
        return rows
    sums: dict[tuple[str, str], list[float]] = {(e, b): [w or 0.0, c or 0.0] for e, b, w, c in rows}
    headers = ArchivedInterval.__table__
    packed = select(headers.c.element_rows).where(
        headers.c.version == source, headers.c.ts >= first, headers.c.ts <= last, headers.c.level == level,
        headers.c.element_rows.is_not(None),
    ).order_by(headers.c.ts)  # fmt: skip
    for (value,) in connection.execute(packed):
        for row in unpack_rows(value).get(kind, []):
            entry = sums.setdefault((row["element_id"], row["bus_id"]), [0.0, 0.0])
            entry[0] += row["energy_kwh"]
            entry[1] += row["carbon_kg"]
    return [(e, b, w, c) for (e, b), (w, c) in sums.items()]


def _header_sums(connection: Connection, source: Any, first: datetime, last: datetime, level: str):
    table = Interval.__table__ if source == "current" else ArchivedInterval.__table__
    query = select(*(func.sum(table.c[name]) for name in HEADER_SUMS)).where(
        table.c.ts >= first, table.c.ts <= last, table.c.level == level
    )
    if source != "current":
        query = query.where(table.c.version == source)
    return connection.execute(query).one()


def _as_of(connection: Connection, version: int, start: datetime, end: datetime, level: str):
    pairs = _sources(connection, version, start, end, level)
    elements: dict[str, dict[str, list[float]]] = {"bus": {}, "load": {}}
    totals = dict.fromkeys(HEADER_SUMS, 0.0)
    for source, first, last in _runs(pairs):
        for kind, sums in elements.items():
            for element_id, bus_id, energy, carbon in _sums(connection, kind, source, first, last, level):
                entry = sums.setdefault(element_id, [0.0, 0.0, bus_id])
                entry[0] += float(energy or 0.0)
                entry[1] += float(carbon or 0.0)
        for name, value in zip(HEADER_SUMS, _header_sums(connection, source, first, last, level)):
            totals[name] += float(value or 0.0)
    return dict(pairs), elements, totals


def _intensity(entry: list[Any] | None) -> float | None:
    return entry[1] * 1000.0 / entry[0] if entry and entry[0] else None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def diff_versions(
    target: Target, a: int, b: int, start: datetime, end: datetime, level: str = ""
) -> dict[str, Any]:
    """Version ``b`` against version ``a`` over the intervals ending in ``(start, end]``: per bus and per
    user (load) the energy, carbon and energy-weighted intensity of both and the change, and the totals."""
    with connection_of(target, write=False) as connection:
        sources_a, elements_a, totals_a = _as_of(connection, a, start, end, level)
        sources_b, elements_b, totals_b = _as_of(connection, b, start, end, level)
        users = dict(connection.execute(select(Load.id, Load.user_name)).all())
    changed = sum(1 for ts in set(sources_a) | set(sources_b) if sources_a.get(ts) != sources_b.get(ts))
    listed: dict[str, list[dict[str, Any]]] = {}
    for kind, name in (("bus", "buses"), ("load", "users")):
        rows = []
        for element_id in sorted(set(elements_a[kind]) | set(elements_b[kind])):
            ea, eb = elements_a[kind].get(element_id), elements_b[kind].get(element_id)
            ia, ib = _intensity(ea), _intensity(eb)
            row = {
                "id": element_id,
                "bus": (ea or eb)[2],  # type: ignore[index]
                "energy_kwh_a": ea[0] if ea else None,
                "energy_kwh_b": eb[0] if eb else None,
                "carbon_kg_a": ea[1] if ea else None,
                "carbon_kg_b": eb[1] if eb else None,
                "delta_carbon_kg": _delta(ea[1] if ea else None, eb[1] if eb else None),
                "intensity_g_per_kwh_a": ia,
                "intensity_g_per_kwh_b": ib,
                "delta_intensity_g_per_kwh": _delta(ia, ib),
            }
            if kind == "load":
                row["user_name"] = users.get(element_id)
            rows.append(row)
        listed[name] = rows
    return {
        "a": a,
        "b": b,
        "start": start,
        "end": end,
        "level": level,
        "intervals": len(set(sources_a) | set(sources_b)),
        "changed_intervals": changed,
        "totals": {
            name: {"a": totals_a[name], "b": totals_b[name], "delta": totals_b[name] - totals_a[name]}
            for name in HEADER_SUMS
        },
        **listed,
    }
