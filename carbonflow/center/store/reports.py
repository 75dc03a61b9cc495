"""Carbon reports and public disclosure releases: their tables, and the queries they need beyond
``results.aggregate``.

* ``reports``: one row per built report file — what was asked (period, scope, format), the data version
  it was made from (a sha256 over the hashes of the intervals it covers) and where its file lies.
* ``releases``: one row per public disclosure release — immutable (never updated; a new publication is
  a new version), its whole content as JSON and the content's sha256.
* :func:`data_version`: the intervals of a period and the hash over their result hashes;
  :func:`loss_sums`: loss energy and loss carbon of the branches, summed in SQL by voltage or region;
  :func:`user_counts`: how many users (loads) stand behind each region / industry (disclosure threshold).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Index,
    Integer,
    String,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from carbonflow.center.store.access import connection_of
from carbonflow.center.store.chain import RELEASE, append_one, release_fields
from carbonflow.center.store.engine import Store
from carbonflow.center.store.results import _region_clause
from carbonflow.center.store.schema import ID, AutoId, Base, BranchResult, Bus, Interval, Load
from carbonflow.center.store.types import Sha256, UtcDateTime

Target = Store | Session | Connection


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(10))  # day | month | year
    start: Mapped[str] = mapped_column(String(10))  # local calendar label: 2026-12-01, 2026-12, 2026
    scope_kind: Mapped[str] = mapped_column(String(20))  # all | region | industry | plant | user
    scope_value: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(200), default="")  # region prefix the report lies in
    format: Mapped[str] = mapped_column(String(10))  # csv | xlsx | pdf
    data_version: Mapped[str] = mapped_column(String(64))
    intervals: Mapped[int] = mapped_column(Integer)
    empty: Mapped[bool] = mapped_column(Boolean)
    file_name: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    scheduled: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Release(Base):
    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)  # the version
    period: Mapped[str] = mapped_column(String(10))
    start: Mapped[str] = mapped_column(String(10))
    min_users: Mapped[int] = mapped_column(Integer)
    data_version: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger)  # the releases' hash chain
    chain_hash: Mapped[str | None] = mapped_column(Sha256)


REPORT_COLUMNS = [c.name for c in Report.__table__.c]


def canonical_sha256(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_version(target: Target, start: datetime, end: datetime) -> tuple[str, int]:
    """``(sha256, n)`` over the result hashes of the intervals ending in ``(start, end]`` (in ts, level
    order): the same stored results give the same version; a re-metered interval changes it."""
    digest = hashlib.sha256()
    count = 0
    query = (
        select(Interval.ts, Interval.level, Interval.interval_s, Interval.hash)
        .where(Interval.ts > start, Interval.ts <= end)
        .order_by(Interval.ts, Interval.level, Interval.interval_s)
    )
    with connection_of(target, write=False) as connection:
        for row in connection.execute(query):
            ts = row.ts.astimezone(UTC).isoformat()
            digest.update(f"{ts}|{row.level}|{row.interval_s}|{row.hash}\n".encode())
            count += 1
    return digest.hexdigest(), count


def loss_sums(
    target: Target, start: datetime, end: datetime, *, region: str | None = None
) -> dict[tuple[float, str], tuple[float, float]]:
    """Branch losses over ``[start, end)`` by the from bus's (voltage, region):
    → (loss energy kWh, loss carbon kg).  Roll up either key by adding: sums add."""
    loss_kwh = (BranchResult.p_send_mw - BranchResult.p_recv_mw) * BranchResult.interval_s / 3.6
    query = (
        select(Bus.voltage_kv, Bus.region, func.sum(loss_kwh), func.sum(BranchResult.loss_carbon_kg))
        .select_from(BranchResult)
        .join(Bus, Bus.id == BranchResult.bus_id)
        .where(BranchResult.ts > start, BranchResult.ts <= end)
        .group_by(Bus.voltage_kv, Bus.region)
    )
    if region is not None:
        query = query.where(_region_clause(Bus.region, region))
    with connection_of(target, write=False) as connection:
        return {
            (row[0], row[1]): (float(row[2] or 0.0), float(row[3] or 0.0))
            for row in connection.execute(query)
        }


def load_directory(target: Target) -> list[dict[str, Any]]:
    """Every user (load): id, name, region, industry (its own, else its bus's)."""
    query = select(
        Load.id,
        Load.user_name,
        Bus.region,
        func.coalesce(Load.industry, Bus.industry).label("industry"),
    ).join(Bus, Bus.id == Load.bus_id)
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query.order_by(Load.id))]


# --- reports -------------------------------------------------------------------------------------------


def save_report(target: Target, row: dict[str, Any]) -> None:
    with connection_of(target, write=True) as connection:
        connection.execute(insert(Report), {"created_at": datetime.now(UTC), **row})


def list_reports(target: Target, *, region: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Reports lying inside the region prefix ``region`` (``""``: all), newest first."""
    query = select(Report.__table__).order_by(Report.created_at.desc(), Report.id).limit(limit)
    if region:
        query = query.where(_region_clause(Report.region, region))
    with connection_of(target, write=False) as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def get_report(target: Target, report_id: str) -> dict[str, Any] | None:
    with connection_of(target, write=False) as connection:
        row = connection.execute(select(Report.__table__).where(Report.id == report_id)).first()
    return None if row is None else dict(row._mapping)


def scheduled_report_exists(target: Target, period: str, start: str, format: str) -> bool:
    query = select(func.count()).where(
        Report.period == period, Report.start == start, Report.format == format, Report.scheduled
    )
    with connection_of(target, write=False) as connection:
        return bool(connection.execute(query).scalar())


# --- releases ------------------------------------------------------------------------------------------


def save_release(
    target: Target,
    *,
    period: str,
    start: str,
    min_users: int,
    version: str,
    content: dict[str, Any],
    actor: str | None,
    note: str | None = None,
) -> dict[str, Any]:
    """A new immutable release (its id is the next version number); answers the stored row."""
    row = {
        "period": period,
        "start": start,
        "min_users": min_users,
        "data_version": version,
        "content": content,
        "sha256": canonical_sha256(content),
        "note": note,
        "actor": actor,
        "created_at": datetime.now(UTC),
    }
    with connection_of(target, write=True) as connection:
        result = connection.execute(insert(Release).returning(Release.id), row)
        row["id"] = int(result.scalar_one())
        # the id (the version number) is part of the link, so the link is made once the id is known
        row.update(append_one(connection, RELEASE, "", release_fields(row)))
        connection.execute(
            update(Release)
            .where(Release.id == row["id"])
            .values(chain_seq=row["chain_seq"], chain_hash=row["chain_hash"])
        )
    return row


def list_releases(target: Target) -> list[dict[str, Any]]:
    columns = [c for c in Release.__table__.c if c.name != "content"]
    with connection_of(target, write=False) as connection:
        return [dict(r._mapping) for r in connection.execute(select(*columns).order_by(Release.id.desc()))]


def get_release(target: Target, release_id: int) -> dict[str, Any] | None:
    with connection_of(target, write=False) as connection:
        row = connection.execute(select(Release.__table__).where(Release.id == release_id)).first()
    return None if row is None else dict(row._mapping)
