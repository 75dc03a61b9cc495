"""Which rows of a list a region-scoped user sees: :class:`RowScope`, filtered in SQL where the list's
query is built, and :func:`within`, the region-prefix test every region scope of the API uses."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, not_, or_, select

from carbonflow.center.store.schema import Device


def within(region: str | None, scope: str) -> bool:
    """Whether ``region`` lies inside the prefix ``scope`` (``""`` covers everything; a resource without
    a region lies only inside ``""``)."""
    if not scope:
        return True
    return region is not None and (region == scope or region.startswith(scope + "/"))


@dataclass(frozen=True)
class RowScope:
    """The rows of a list a user of region ``prefix`` (non-empty, e.g. ``AH/HF``) sees: those whose region
    lies inside it (:func:`within`: the prefix itself or below it, never a sibling such as ``AH/HFX``),
    and the rows without a region (center-level items) only when ``unregioned`` — the user's prefix
    covers the center's own region.  The list functions of the store take it as ``scope`` (``None``:
    every row) and filter in SQL, so counts and pages are those of the user's rows."""

    prefix: str
    unregioned: bool = False

    def clause(self, region: ColumnElement) -> ColumnElement[bool]:
        """SQL: ``region`` lies inside the prefix (compared exactly: no LIKE, whose wildcards and case
        folding on SQLite would let ``AH/H_`` or ``ah/hf`` through)."""
        below = self.prefix + "/"
        inside = or_(region == self.prefix, func.substr(region, 1, len(below)) == below)
        return or_(inside, region.is_(None)) if self.unregioned else inside

    def admits(self, region: str | None) -> bool:
        """The same test in Python, for rows that do not come from one SQL query."""
        return self.unregioned if region is None else within(region, self.prefix)

    def names(
        self, key: ColumnElement, id_column: ColumnElement, region: ColumnElement
    ) -> ColumnElement[bool]:
        """SQL: ``key`` names a row (``id_column``, e.g. a device) whose ``region`` lies in scope; a key
        naming no row counts as one without a region.  A semi-join (``IN``/``NOT IN`` a subquery) rather
        than a join per row: the planner hashes the few devices once for millions of commands."""
        if self.unregioned:  # everything but the rows of a region outside
            return key.not_in(select(id_column).where(not_(self.clause(region))))
        return key.in_(select(id_column).where(self.clause(region)))

    def by_device(self, query, device_id: ColumnElement):
        """``query`` restricted to rows whose device (``device_id``) lies in scope; a row whose device is
        not registered counts as a row without a region."""
        return query.where(self.names(device_id, Device.id, Device.region))
