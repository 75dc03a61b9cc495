"""Archived element rows packed into one value per replaced interval (store/archived_rows.py): the
packing round-trips, and results archived row by row before that format stay readable (one interval
as of a version, and the diff of versions over packed and row-by-row archives mixed); element rows whose
values did not change are not rewritten, with the same stored results as rewriting them all."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from services import database_url, postgres_database, postgres_url, sqlite_url, store  # noqa: F401
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from test_recompute import RESULT_TABLES, SPAN, fossil_generator, stored, table_rows, world  # noqa: F401

from carbonflow.center.metering.recompute import recompute
from carbonflow.center.store import (
    Store,
    add_correction,
    archived_rows,
    diff_versions,
    header_as_of,
    result_versions,
)
from carbonflow.center.store.archived_rows import pack_columns, pack_rows, unpack_rows
from carbonflow.center.store.result_versions import ArchivedInterval, ArchivedResult
from carbonflow.center.store.schema import RESULT_MODELS


def test_packed_rows_round_trip_with_missing_intensities_and_empty_kinds():
    rows = {
        "bus": [("b1", "b1", 512.25, 10.0, 5.1225), ("b2", "b2", None, 0.0, 0.0)],
        "branch": [],
        "load": [("l-1", "b2", 1e-300, 3.5, -0.0)],
    }
    value = pack_rows(rows)
    assert value == pack_rows(rows)  # the same rows, the same bytes
    unpacked = unpack_rows(value)
    assert list(unpacked) == ["bus", "branch", "load"]
    assert [tuple(r.values()) for r in unpacked["bus"]] == rows["bus"]
    assert unpacked["branch"] == []
    assert [tuple(r.values()) for r in unpacked["load"]] == rows["load"]
    with pytest.raises(ValueError):
        unpack_rows(b"XXXX" + value[4:])
    # packed from columns (what recomputation packs) and as the format was first written, byte for byte
    columns = {kind: tuple(zip(*items)) or ((),) * 5 for kind, items in rows.items()}
    assert pack_columns(columns) == value == _packed_as_first_written(rows)


def _packed_as_first_written(rows) -> bytes:
    """The packing as the format's first writer made it, row by row (the reference for the bytes)."""
    header, numbers = [], []
    for kind, items in rows.items():
        header.append([kind, [r[0] for r in items], [r[1] for r in items]])
        intensity = [float("nan") if r[2] is None else r[2] for r in items]
        numbers.append(np.array([intensity, [r[3] for r in items], [r[4] for r in items]], dtype="<f8"))
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"CFR1" + struct.pack("<I", len(text)) + text + b"".join(n.tobytes() for n in numbers)


def _to_row_by_row(store, stamps) -> None:  # noqa: F811
    """Rewrite the packed archives at ``stamps`` as the previous format stored them."""
    table = ArchivedInterval.__table__
    with store.write() as connection:
        archived = connection.execute(select(table).where(table.c.ts.in_(stamps))).all()
        for header in archived:
            for kind, rows in unpack_rows(header.element_rows).items():
                connection.execute(
                    ArchivedResult.__table__.insert(),
                    [
                        {
                            **row,
                            "version": header.version,
                            "ts": header.ts,
                            "level": header.level,
                            "interval_s": header.interval_s,
                            "kind": kind,
                        }
                        for row in rows
                    ],
                )
            connection.execute(
                update(table)
                .where(table.c.version == header.version, table.c.ts == header.ts)
                .values(element_rows=None)
            )


def _numbers(diff) -> list[float]:
    return [
        value
        for name in ("buses", "users")
        for row in diff[name]
        for value in (row["energy_kwh_a"], row["carbon_kg_a"], row["energy_kwh_b"], row["carbon_kg_b"])
    ] + [diff["totals"][name]["a"] for name in diff["totals"]]


def test_results_archived_row_by_row_stay_readable_next_to_packed_ones(store, world):  # noqa: F811
    ends = stored(store, world)
    generator, _ = fossil_generator(world)
    add_correction(store, "emission_factor", generator, ends[0] - SPAN, ends[-1], "1100")
    url = store.engine.url.render_as_string(hide_password=False)
    assert recompute(store, url, ends[0] - SPAN, ends[-1], chunk_intervals=4).intervals == len(ends)
    headers = {end: header_as_of(store, end, 0) for end in ends}
    assert not any(h["current"] for h in headers.values()) and "element_rows" not in headers[ends[0]]
    before = {(end, kind): archived_rows(store, kind, headers[end]) for end in ends for kind in RESULT_MODELS}
    assert all(before.values()) and all(r["element_id"] for rows in before.values() for r in rows)
    diff = diff_versions(store, 0, 1, ends[0] - SPAN, ends[-1])
    _to_row_by_row(store, ends[::2])  # half the intervals as the previous format archived them
    after = {(end, kind): archived_rows(store, kind, headers[end]) for end in ends for kind in RESULT_MODELS}
    assert after == before
    mixed = diff_versions(store, 0, 1, ends[0] - SPAN, ends[-1])
    assert [r["id"] for r in mixed["buses"]] == [r["id"] for r in diff["buses"]]
    assert _numbers(mixed) == pytest.approx(_numbers(diff), rel=1e-12, abs=1e-12)


def test_rows_left_alone_when_unchanged_give_what_rewriting_every_row_gives(tmp_path, world, monkeypatch):  # noqa: F811
    """Only the element rows whose values changed are updated; the stored results are exactly those of
    the delete-and-insert path that rewrites every row."""
    urls = [f"sqlite:///{tmp_path / name}" for name in ("skip.db", "rewrite.db")]
    generator, _ = fossil_generator(world)
    updated: list[int] = []

    def count_updates(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE") and "_results SET" in statement:
            updated.append(len(parameters) if executemany else 1)

    outcome = []
    for url in urls:
        target = Store.open(url)
        ends = stored(target, world)
        add_correction(target, "emission_factor", generator, ends[0] - SPAN, ends[-1], "1100")
        if url == urls[1]:
            monkeypatch.setattr(result_versions, "changed_rows", lambda *args: None)
        event.listen(Engine, "before_cursor_execute", count_updates)  # the chunk's own store
        assert recompute(target, url, ends[0] - SPAN, ends[-1], chunk_intervals=5).intervals == len(ends)
        event.remove(Engine, "before_cursor_execute", count_updates)
        outcome.append([table_rows(target, model, *order) for model, order in RESULT_TABLES])
        if url == urls[0]:
            total = sum(len(rows) for rows in outcome[0][1:5])
            assert 0 < sum(updated) < total  # the rows downstream of the corrected unit, not all
        target.close()
    assert outcome[0] == outcome[1]
