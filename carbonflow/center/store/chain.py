"""Hash chains over the stored record (docs/tamper-evidence.md): readings per point, interval result
versions per interval, disclosure releases and the audit log.

Every chained row carries ``chain_seq`` (1, 2, 3, ... within its chain) and ``chain_hash`` =
SHA-256 of the canonical encoding of its fields, its ``chain_seq`` and the previous link's hash.  The
chain follows *insertion order*, not ``ts``: a late reading or a re-metered interval is appended at the
head, so storing it never rewrites stored hashes (a ts-ordered chain would have to re-hash everything
after a late reading — and a rewrite is exactly what the chain must make visible).

``chain_heads`` keeps the last link of every chain (``seq``, ``hash``): a deleted tail is seen by the
head pointing past the last row.  Retention deletes old links; it records what it removed so a
verifier can tell retention from tampering: ``anchor_seq`` / ``anchor_hash`` in the head (the links
1..anchor_seq are gone, the last of them had ``anchor_hash``) and, for links deleted out of order (a
late reading older than the cutoff whose neighbours in the chain are kept), one ``chain_gaps`` row each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from sqlalchemy import BigInteger, Connection, String, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from carbonflow.center.store.access import driver_rows
from carbonflow.center.store.schema import Base
from carbonflow.center.store.types import Sha256, UtcDateTime

GENESIS = "0" * 64  # the "previous hash" of a chain's first link
LOOKUP_PAGE = 500

# chain kinds (chain_heads.kind): readings per point, versions per interval, releases, the audit log
READING, INTERVAL, RELEASE, AUDIT = "reading", "interval", "release", "audit"


class ChainHead(Base):
    __tablename__ = "chain_heads"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)  # point id, interval key, "" ...
    seq: Mapped[int] = mapped_column(BigInteger)  # the last link's chain_seq (0: none yet)
    hash: Mapped[str] = mapped_column(Sha256)
    anchor_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # links 1..anchor_seq removed by retention
    anchor_hash: Mapped[str] = mapped_column(Sha256, default=GENESIS)
    # not indexed: moving a head (every ingested reading) then is a heap-only update on PostgreSQL, whose
    # pages migration 0017 leaves half free; the checkpoint's "moved since" scans the table
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChainGap(Base):
    """One link retention removed out of order (its chain neighbours were kept)."""

    __tablename__ = "chain_gaps"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(Sha256)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime)


# --- canonical encoding --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a batch holds many readings of few timestamps (one per poll)
def ts_text(value: datetime) -> str:
    """UTC, microseconds, ``Z`` (``2025-03-01T00:15:00.000000Z``): what both backends give back exactly,
    and the very text SQLite stores, so verifying there needs no parsing."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def decimal_text(value: Decimal | str | None) -> str | None:
    """The exact decimal as plain digits: PostgreSQL's NUMERIC gives ``1E+3`` back as ``1000`` and
    ``-0`` as ``0``, so the encoding is the form that survives both backends, trailing zeros kept."""
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else Decimal(value)
    if number.is_zero():
        number = abs(number)
    return format(number, "f")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# _CANONICAL's own C encoder, made once: JSONEncoder.encode builds this very object (same arguments) on
# every call, which cost more than encoding a reading's link (~6 µs against ~1 µs, issue 17 §2).  No
# circular-reference markers: a link's parts are built here, never self-referencing
_ENCODE_ONE_SHOT = c_make_encoder and c_make_encoder(
    None, _CANONICAL.default, encode_basestring, None, ":", ",", True, False, True
)


def canonical_json(parts: Sequence[Any]) -> str:
    """A JSON array, compact, keys sorted, UTF-8 text kept (``ensure_ascii=False``)."""
    if _ENCODE_ONE_SHOT is None:  # an interpreter without the C accelerator
        return _CANONICAL.encode(list(parts))
    return "".join(_ENCODE_ONE_SHOT(list(parts), 0))


def link_hash(kind: str, fields: Sequence[Any], seq: int, previous: str) -> str:
    """SHA-256 of ``[kind, *fields, seq, previous]`` as canonical JSON."""
    return hashlib.sha256(canonical_json([kind, *fields, seq, previous]).encode("utf-8")).hexdigest()


def reading_fields(point_id: str, ts: datetime | str, value: Any, quality: str) -> list[Any]:
    """``ts`` as a datetime, or already as its ``ts_text`` (SQLite's stored text, read without parsing)."""
    return [point_id, ts if isinstance(ts, str) else ts_text(ts), decimal_text(value), quality]


def audit_fields(row: Any) -> list[Any]:
    return [ts_text(row["ts"]), row["actor"], row["action"], row["object"], row["detail"]]


def release_fields(row: Any) -> list[Any]:
    keys = ("id", "period", "start", "min_users", "data_version", "sha256", "note", "actor")
    return [*(row[k] for k in keys), ts_text(row["created_at"])]


def interval_key(ts: datetime, level: str, interval_s: int) -> str:
    return f"{ts_text(ts)}|{level}|{interval_s}"


def interval_fields(row: Any) -> list[Any]:
    """A version of an interval's result: the key, the result hash, totals, estimation, when made."""
    return [
        ts_text(row["ts"]),
        row["level"],
        row["interval_s"],
        row["hash"],
        row["totals"],
        row["estimation"],
        ts_text(row["created_at"]),
    ]


# --- appending -----------------------------------------------------------------------------------------


def _insert(connection: Connection, table):
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


# PostgreSQL: the keys as a hash semi-join on one JSON parameter, rows as tuples (access.driver_rows)
_LOCK_HEADS = (
    "SELECT key, seq, hash FROM chain_heads WHERE kind = %s "
    "AND key IN (SELECT jsonb_array_elements_text(%s::jsonb)) "
    'ORDER BY key COLLATE "C" FOR UPDATE'
)


def lock_heads(connection: Connection, kind: str, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
    """The heads of ``keys`` (created empty when new), locked until commit on PostgreSQL so two
    transactions never append to one chain at once (SQLite writers are serialised by BEGIN IMMEDIATE)."""
    wanted = sorted(set(keys))  # pages in key order too (see fetch)
    heads: dict[str, tuple[int, str]] = {}

    postgres = connection.dialect.name == "postgresql"

    def fetch(page: list[str]) -> None:
        if postgres:
            # one JSON parameter, not a page of IN parameters: rendering and parsing 2,000 of them cost
            # more than the lookup (issue 17 §2); locks taken in one global order — code-point order,
            # the keys' Python order (LockRows sits above the sort) — so two batches locking
            # overlapping chains cannot deadlock
            rows = driver_rows(connection, _LOCK_HEADS, (kind, json.dumps(page, ensure_ascii=False)))
            heads.update({key: (seq, bytes(digest).hex()) for key, seq, digest in rows})
            return
        query = select(ChainHead.key, ChainHead.seq, ChainHead.hash)
        query = query.where(ChainHead.kind == kind, ChainHead.key.in_(page))
        heads.update({row.key: (row.seq, row.hash) for row in connection.execute(query)})

    page_size = len(wanted) or 1 if postgres else LOOKUP_PAGE
    for start in range(0, len(wanted), page_size):
        fetch(wanted[start : start + page_size])
    missing = [key for key in wanted if key not in heads]
    if missing:
        now = datetime.now(UTC)
        rows = [
            {
                "kind": kind,
                "key": key,
                "seq": 0,
                "hash": GENESIS,
                "anchor_seq": 0,
                "anchor_hash": GENESIS,
                "updated_at": now,
            }
            for key in missing
        ]
        # a concurrent first append made the row already: fine, it is locked by the fetch below
        connection.execute(_insert(connection, ChainHead.__table__).on_conflict_do_nothing(), rows)
        for start in range(0, len(missing), page_size):
            fetch(missing[start : start + page_size])
    return heads


def link_prefix(kind: str, fields: Sequence[Any]) -> bytes:
    """The bytes ``link_hash`` hashes up to the link's ``seq``: ``[kind,*fields,`` as canonical JSON — the
    part of a link that does not depend on its chain's head, so a batch can encode it before it locks
    the heads (a concurrent batch of the same points waits on those locks until it commits)."""
    return canonical_json([kind, *fields])[:-1].encode("utf-8") + b","


def links_after(
    items: Sequence[tuple[str, bytes]], heads: dict[str, tuple[int, str]]
) -> tuple[list[tuple[int, str]], dict[str, tuple[int, str]]]:
    """The links of ``(chain key, link_prefix)`` items after ``heads`` (nothing written): ``(chain_seq,
    chain_hash)`` per item, and the heads they move to.  Each hash is ``link_hash``'s: the prefix, then
    ``seq,"previous"]`` as canonical JSON writes an int and a string (tests/test_chain_links.py)."""
    moved: dict[str, tuple[int, str]] = {}
    links = []
    sha256 = hashlib.sha256
    for key, prefix in items:
        seq, previous = moved.get(key) or heads[key]
        seq += 1
        digest = sha256(prefix + f"{seq:d},{encode_basestring(previous)}]".encode()).hexdigest()
        moved[key] = (seq, digest)
        links.append((seq, digest))
    return links, moved


def next_links(
    kind: str, items: Sequence[tuple[str, Sequence[Any]]], heads: dict[str, tuple[int, str]]
) -> tuple[list[tuple[int, str]], dict[str, tuple[int, str]]]:
    """The links of ``(chain key, fields)`` items after ``heads`` (``links_after``)."""
    return links_after([(key, link_prefix(kind, fields)) for key, fields in items], heads)


def move_heads(connection: Connection, kind: str, moved: dict[str, tuple[int, str]]) -> None:
    """One batched update of the heads ``next_links`` answered."""
    if not moved:
        return
    table, now = ChainHead.__table__, datetime.now(UTC)
    if connection.dialect.name == "postgresql":
        # one set-based UPDATE from one JSON parameter of [key, seq, hash] rows instead of an UPDATE per
        # head (a batch moves ~2,000): json.dumps writes it in C, where psycopg dumped three arrays element
        # by element; hashes as hex text, decoded by the server
        moved_rows = [[key, seq, digest] for key, (seq, digest) in moved.items()]
        connection.execute(
            text(
                "UPDATE chain_heads AS h SET seq = (v.item->>1)::bigint, hash = decode(v.item->>2, 'hex'), "
                "updated_at = :now FROM jsonb_array_elements(CAST(:moved AS jsonb)) AS v(item) "
                "WHERE h.kind = :kind AND h.key = v.item->>0"
            ).bindparams(
                bindparam("moved", json.dumps(moved_rows, ensure_ascii=False), type_=String),
                bindparam("now", now, type_=UtcDateTime),
                bindparam("kind", kind),
            )
        )
        return
    connection.execute(
        update(table)
        .where(table.c.kind == kind, table.c.key == bindparam("k"))
        .values(seq=bindparam("s"), hash=bindparam("h"), updated_at=now),
        [{"k": key, "s": seq, "h": digest} for key, (seq, digest) in moved.items()],
    )


def append_links(
    connection: Connection, kind: str, items: Sequence[tuple[str, Sequence[Any]]]
) -> list[tuple[int, str]]:
    """Append one link per ``(chain key, fields)`` in the given order; answers ``(chain_seq, chain_hash)``
    per item and moves the heads — one lookup and one batched update, whatever the number of items."""
    if not items:
        return []
    heads = lock_heads(connection, kind, (key for key, _ in items))
    links, moved = next_links(kind, items, heads)
    move_heads(connection, kind, moved)
    return links


def append_one(connection: Connection, kind: str, key: str, fields: Sequence[Any]) -> dict[str, Any]:
    """The ``chain_seq`` / ``chain_hash`` columns of one new row."""
    ((seq, digest),) = append_links(connection, kind, [(key, fields)])
    return {"chain_seq": seq, "chain_hash": digest}


# --- retention -----------------------------------------------------------------------------------------


def retire_links(connection: Connection, kind: str, links: Iterable[tuple[str, int, str, datetime]]) -> int:
    """Record links that retention is about to delete — ``(key, seq, hash, ts)`` grouped by key, in seq
    order within a key — so verification can tell them from tampering.  The contiguous run from a
    chain's anchor moves the anchor; links deleted out of order (a late reading older than the cutoff,
    its chain neighbours kept) become ``chain_gaps`` rows until a later purge joins them to the run.
    Answers the number of links recorded."""
    gaps_table, heads_table = ChainGap.__table__, ChainHead.__table__
    now, count = datetime.now(UTC), 0
    for key, group in groupby(links, key=lambda link: link[0]):
        retired = {seq: (digest, ts) for _key, seq, digest, ts in group}
        count += len(retired)
        head = connection.execute(
            select(heads_table.c.anchor_seq, heads_table.c.anchor_hash).where(
                heads_table.c.kind == kind, heads_table.c.key == key
            )
        ).first()
        anchor_seq, anchor_hash = (head.anchor_seq, head.anchor_hash) if head else (0, GENESIS)
        gaps = {
            row.seq: (row.hash, row.ts)
            for row in connection.execute(
                select(gaps_table.c.seq, gaps_table.c.hash, gaps_table.c.ts).where(
                    gaps_table.c.kind == kind, gaps_table.c.key == key
                )
            )
        }
        gone = {**gaps, **retired}
        while anchor_seq + 1 in gone:
            anchor_seq += 1
            anchor_hash = gone[anchor_seq][0]
        connection.execute(
            update(heads_table)
            .where(heads_table.c.kind == kind, heads_table.c.key == key)
            .values(anchor_seq=anchor_seq, anchor_hash=anchor_hash)
        )
        connection.execute(
            gaps_table.delete().where(
                gaps_table.c.kind == kind, gaps_table.c.key == key, gaps_table.c.seq <= anchor_seq
            )
        )
        new_gaps = [
            {"kind": kind, "key": key, "seq": seq, "hash": digest, "ts": ts, "deleted_at": now}
            for seq, (digest, ts) in sorted(retired.items())
            if seq > anchor_seq and seq not in gaps
        ]
        if new_gaps:
            connection.execute(gaps_table.insert(), new_gaps)
    return count
