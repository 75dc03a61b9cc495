"""Public disclosure: the carbon of electricity by region (province → city → county), by industry and for
the key users who consented — and nothing a reader could trace to a user who did not.

* An aggregate is published only when at least ``min_users`` users (loads that consumed energy in the
  period) stand behind it; otherwise it is listed as ``suppressed`` without any figure.
* Secondary suppression: when exactly one child of a published parent is suppressed, its figures would
  be the parent's minus its siblings'; the smallest published sibling is then suppressed too (repeated
  until no parent has exactly one suppressed child).  Industries count as the children of the total.
* Key users appear only when their id is in the consent list (configuration).

Every figure is energy-weighted (Σ carbon / Σ energy) from the per-user sums of ``store.aggregate``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from carbonflow.center.reports.build import ReportInputError, period_bounds
from carbonflow.center.store import Store, aggregate, data_version, latest_interval_ts, load_directory

DEFAULT_MIN_USERS = 3


def _figures(energy_kwh: float, carbon_kg: float) -> dict[str, float | None]:
    return {
        "energy_mwh": round(energy_kwh / 1000.0, 3),
        "carbon_t": round(carbon_kg / 1000.0, 3),
        "intensity_g_per_kwh": round(carbon_kg * 1000.0 / energy_kwh, 3) if energy_kwh else None,
    }


def default_period(store: Store, time_zone: str) -> tuple[str, str]:
    """The month holding the latest metered interval (``("month", "2026-12")``)."""
    latest = latest_interval_ts(store)
    if latest is None:
        raise ReportInputError("start", "no metered data yet: give the period explicitly")
    local = (latest - timedelta(microseconds=1)).astimezone(ZoneInfo(time_zone))
    return "month", f"{local.year:04d}-{local.month:02d}"


def _user_sums(store: Store, first, last, zone: ZoneInfo) -> dict[str, list[float]]:
    offset = int(first.astimezone(zone).utcoffset().total_seconds() // 60)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in aggregate(store, "load", "month", first, last, utc_offset_minutes=offset):
        sums[row.key][0] += row.energy_kwh
        sums[row.key][1] += row.carbon_kg
    return sums


class _Group:
    def __init__(self, key: str, parent: str | None, depth: int) -> None:
        self.key, self.parent, self.depth = key, parent, depth
        self.users: set[str] = set()
        self.energy = self.carbon = 0.0
        self.suppressed = False

    def add(self, user: str, energy: float, carbon: float) -> None:
        self.users.add(user)
        self.energy += energy
        self.carbon += carbon


def _suppress(groups: list[_Group], min_users: int, root_published: bool) -> None:
    for group in groups:
        group.suppressed = len(group.users) < min_users
    published = {g.key: not g.suppressed for g in groups}
    while True:
        children: dict[str | None, list[_Group]] = defaultdict(list)
        for group in groups:
            children[group.parent].append(group)
        changed = False
        for parent, kids in children.items():
            parent_published = root_published if parent is None else published.get(parent, False)
            hidden = [k for k in kids if k.suppressed]
            shown = [k for k in kids if not k.suppressed]
            if parent_published and len(hidden) == 1 and shown:
                smallest = min(shown, key=lambda k: (len(k.users), k.energy, k.key))
                smallest.suppressed, published[smallest.key] = True, False
                changed = True
        if not changed:
            return


def _item(group: _Group, **extra: Any) -> dict[str, Any]:
    if group.suppressed:
        return {**extra, "suppressed": True}
    return {**extra, "suppressed": False, "users": len(group.users), **_figures(group.energy, group.carbon)}


def disclosure(
    store: Store,
    period: str | None = None,
    start: str | None = None,
    *,
    time_zone: str = "Asia/Shanghai",
    min_users: int = DEFAULT_MIN_USERS,
    consent: list[str] | frozenset[str] = (),
) -> dict[str, Any]:
    """The whole public content of one period: total, regions (a tree, by path), industries, key users."""
    if period is None and start is None:
        period, start = default_period(store, time_zone)
    elif period is None or start is None:
        raise ReportInputError("start" if start is None else "period", "give both period and start")
    zone = ZoneInfo(time_zone)
    first, last = period_bounds(period, start, zone)
    version, intervals = data_version(store, first, last)
    sums = _user_sums(store, first, last, zone)
    directory = {u["id"]: u for u in load_directory(store)}
    total = _Group("", None, 0)
    regions: dict[str, _Group] = {}
    industries: dict[str, _Group] = {}
    for user, (energy, carbon) in sums.items():
        info = directory.get(user)
        if info is None or energy <= 0:  # a user without consumption stands behind nothing
            continue
        total.add(user, energy, carbon)
        parts = [p for p in (info["region"] or "").split("/") if p]
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in regions:
                regions[path] = _Group(path, "/".join(parts[: depth - 1]) or None, depth)
            regions[path].add(user, energy, carbon)
        industry = info["industry"] or "unknown"
        industries.setdefault(industry, _Group(industry, None, 1)).add(user, energy, carbon)
    total.suppressed = len(total.users) < min_users
    _suppress(list(regions.values()), min_users, not total.suppressed)
    _suppress(list(industries.values()), min_users, not total.suppressed)
    consenting = set(consent)
    key_users = [
        {
            "id": user,
            "name": directory[user]["user_name"],
            "region": directory[user]["region"],
            "industry": directory[user]["industry"],
            **_figures(*sums.get(user, [0.0, 0.0])),
        }
        for user in sorted(consenting)
        if user in directory
    ]
    return {
        "period": period,
        "start": start,
        "from": first,
        "to": last,
        "time_zone": time_zone,
        "min_users": min_users,
        "data_version": version,
        "intervals": intervals,
        "total": _item(total),
        "regions": [
            _item(g, region=g.key, parent=g.parent, depth=g.depth)
            for g in sorted(regions.values(), key=lambda g: g.key)
        ],
        "industries": [_item(g, industry=g.key) for g in sorted(industries.values(), key=lambda g: g.key)],
        "key_users": key_users,
    }
