"""``verify``: recompute every hash chain and check the signed checkpoints (docs/tamper-evidence.md).

Streaming: each table is read once in chain order with a server-side cursor (``yield_per``); what is
held in memory is one chain head per chain and, per chain, the one link its newest checkpoint names —
not the rows — so a database of millions of readings verifies in bounded memory.

Findings name the table, the record and what happened to it:

* ``edited`` — a row whose content no longer gives its stored hash;
* ``inserted`` — a row without a link, a second row claiming a link already taken, or a link past the
  chain's head;
* ``deleted`` — a link missing inside a chain (not removed by retention), a head pointing past the last
  row, or a link a checkpoint recorded that is no longer there;
* ``forged`` — a checkpoint whose signature or heads do not verify, or whose chain of checkpoints breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, String, select, type_coerce

from carbonflow.center.store.access import stream
from carbonflow.center.store.chain import (
    AUDIT,
    GENESIS,
    INTERVAL,
    READING,
    RELEASE,
    ChainGap,
    ChainHead,
    audit_fields,
    interval_fields,
    interval_key,
    link_hash,
    reading_fields,
    release_fields,
    ts_text,
)
from carbonflow.center.store.checkpoints import (
    CheckpointView,
    HeadsDigest,
    checkpoint_heads,
    checkpoint_rows,
    document_hash,
    public_key_text,
    signature_ok,
    stored_key,
)
from carbonflow.center.store.engine import Store
from carbonflow.center.store.reports import Release, canonical_sha256
from carbonflow.center.store.schema import AuditEntry, Interval, Reading
from carbonflow.center.store.versions import versions_by_ts

NO_HEAD = 2**63 - 1  # the head row is gone: every link number is "before the head"


@dataclass(frozen=True)
class Finding:
    table: str
    record: str
    kind: str  # edited | inserted | deleted | forged

    def __str__(self) -> str:
        return f"{self.table} {self.record}: {self.kind}"


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    links: dict[str, int] = field(default_factory=dict)  # chain kind → links checked
    chains: dict[str, int] = field(default_factory=dict)
    checkpoints: int = 0
    last_checkpoint: str | None = None
    key_source: str = ""

    @property
    def clean(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.links.get(k, 0)} {k} links in {self.chains.get(k, 0)} chains"
            for k in (READING, INTERVAL, RELEASE, AUDIT)
        )
        checkpoints = f"{self.checkpoints} checkpoints"
        if self.last_checkpoint:
            checkpoints += f" (last {self.last_checkpoint}, {self.key_source})"
        verdict = "clean" if self.clean else f"{len(self.findings)} findings"
        return f"{verdict}: {counts}; {checkpoints}"


@dataclass(frozen=True)
class Link:
    """One chained row as the walk sees it: its chain, link number, stored hash, fields, and a name."""

    key: str
    seq: int
    stored: str
    fields: list[Any]
    record: str


@dataclass
class Chain:
    """How one kind of record is chained and where its rows live."""

    kind: str
    table: str
    links: Callable[[Connection], Iterator[Link]]  # chained rows, grouped by key, by seq in a key
    unchained: Callable[[Connection], Iterator[str]]  # rows without a link: their names


def _reading_links(connection: Connection) -> Iterator[Link]:
    c = Reading.__table__.c
    # SQLite stores ts as the very canonical text: read it as text, parsing a million dates is slow
    ts = type_coerce(c.ts, String).label("ts") if connection.dialect.name == "sqlite" else c.ts
    query = (
        select(c.point_id, ts, c.value, c.quality, c.chain_seq, c.chain_hash)
        .where(c.chain_seq.is_not(None))
        .order_by(c.point_id, c.chain_seq)
    )
    for point, stamp, value, quality, seq, digest in stream(connection, query):
        fields = reading_fields(point, stamp, value, quality)
        yield Link(point, seq, digest, fields, f"point {point} ts {fields[1]} (link {seq})")


def _unchained(table, *name_columns: str) -> Callable[[Connection], Iterator[str]]:
    def rows(connection: Connection) -> Iterator[str]:
        query = select(*(table.c[n] for n in name_columns)).where(table.c.chain_seq.is_(None))
        for row in stream(connection, query):
            yield " ".join(
                f"{n} {ts_text(v) if hasattr(v, 'tzinfo') else v}"
                for n, v in zip(name_columns, row, strict=True)
            )

    return rows


def _interval_links(connection: Connection) -> Iterator[Link]:
    columns = (
        "ts",
        "level",
        "interval_s",
        "hash",
        "totals",
        "estimation",
        "created_at",
        "chain_seq",
        "chain_hash",
    )
    rows = versions_by_ts(connection, columns, chained=True)
    for _interval, versions in groupby(
        rows, key=lambda pair: (pair[0].ts, pair[0].level, pair[0].interval_s)
    ):
        # one chain: the interval's versions in link order (which tampering may have made differ)
        for row, _current in sorted(versions, key=lambda pair: pair[0].chain_seq):
            yield _interval_link(row)


def _interval_link(row: Any) -> Link:
    return Link(
        interval_key(row.ts, row.level, row.interval_s),
        row.chain_seq,
        row.chain_hash,
        interval_fields(row._mapping),
        f"ts {ts_text(row.ts)} level {row.level!r} interval_s {row.interval_s} version {row.chain_seq}",
    )


def _single_chain(
    table, fields: Callable[[Any], list[Any]], name: Callable[[Any], str], columns: Iterable[str]
) -> Callable[[Connection], Iterator[Link]]:
    def links(connection: Connection) -> Iterator[Link]:
        query = (
            select(*(table.c[n] for n in columns))
            .where(table.c.chain_seq.is_not(None))
            .order_by(table.c.chain_seq)
        )
        for row in stream(connection, query):
            yield Link("", row.chain_seq, row.chain_hash, fields(row._mapping), name(row))

    return links


def _release_links(connection: Connection) -> Iterator[Link]:
    """Releases, their content checked too: the link covers the content's recorded SHA-256, which
    must still be the content's — if not, the link is fed a digest that cannot match."""
    table = Release.__table__
    query = select(table).where(table.c.chain_seq.is_not(None)).order_by(table.c.chain_seq)
    for row in stream(connection, query):
        actual = canonical_sha256(row.content)
        fields = release_fields({**row._mapping, "sha256": row.sha256 if actual == row.sha256 else actual})
        yield Link("", row.chain_seq, row.chain_hash, fields, f"id {row.id} ({row.period} {row.start})")


CHAINS = (
    Chain(READING, "readings", _reading_links, _unchained(Reading.__table__, "point_id", "ts")),
    Chain(
        INTERVAL, "intervals", _interval_links, _unchained(Interval.__table__, "ts", "level", "interval_s")
    ),
    Chain(RELEASE, "releases", _release_links, _unchained(Release.__table__, "id")),
    Chain(
        AUDIT,
        "audit",
        _single_chain(
            AuditEntry.__table__,
            audit_fields,
            lambda r: f"id {r.id} ({r.action})",
            ("id", "ts", "actor", "action", "object", "detail", "chain_seq", "chain_hash"),
        ),
        _unchained(AuditEntry.__table__, "id"),
    ),
)


# --- checkpoints ---------------------------------------------------------------------------------------


def _checkpoints(
    connection: Connection, trusted: dict[str, Ed25519PublicKey] | None, report: VerifyReport
) -> CheckpointView:
    """``trusted``: the given public keys by their text (current and retired), None: the stored ones."""
    view = CheckpointView(expected={})
    previous = GENESIS
    for row in checkpoint_rows(connection):
        mapping = row._mapping
        name = f"id {row.id} ({ts_text(row.created_at)})"
        key = stored_key(row.public_key) if trusted is None else trusted.get(row.public_key)
        if trusted is not None and key is None:
            report.findings.append(Finding("checkpoints", name, "forged (signed by another key)"))
        elif not signature_ok(mapping, key):
            report.findings.append(Finding("checkpoints", name, "forged (signature)"))
        if row.previous != previous:
            report.findings.append(
                Finding("checkpoints", name, "deleted or inserted (checkpoint chain breaks)")
            )
        previous = document_hash(mapping)
        digest = HeadsDigest()
        for head in checkpoint_heads(connection, row.id):
            digest.add(head.kind, head.key, head.seq, head.hash)
            view.expected[(head.kind, head.key)] = (head.seq, head.hash, row.id)
        if (digest.hexdigest(), digest.count) != (row.heads_sha256, row.n_heads):
            report.findings.append(
                Finding("checkpoint_heads", name, "edited (heads differ from the signed digest)")
            )
        view.count += 1
        view.last_id, view.last_hash = row.id, previous
    return view


# --- the walk ------------------------------------------------------------------------------------------


@dataclass
class _Head:
    seq: int
    hash: str
    anchor_seq: int
    anchor_hash: str


def _heads(connection: Connection, kind: str) -> dict[str, _Head]:
    query = select(
        ChainHead.key, ChainHead.seq, ChainHead.hash, ChainHead.anchor_seq, ChainHead.anchor_hash
    ).where(ChainHead.kind == kind)
    return {r.key: _Head(r.seq, r.hash, r.anchor_seq, r.anchor_hash) for r in connection.execute(query)}


def _gaps(connection: Connection, kind: str) -> dict[str, dict[int, str]]:
    gaps: dict[str, dict[int, str]] = {}
    for row in connection.execute(
        select(ChainGap.key, ChainGap.seq, ChainGap.hash).where(ChainGap.kind == kind)
    ):
        gaps.setdefault(row.key, {})[row.seq] = row.hash
    return gaps


def _walk_chain(
    chain: Chain,
    key: str,
    links: list[Link] | Iterator[Link],
    head: _Head | None,
    gaps: dict[int, str],
    checkpointed: tuple[int, str, int] | None,
    report: VerifyReport,
) -> None:
    """One chain, links in seq order: recompute each hash from the previous stored one."""
    found = report.findings
    label = f"{chain.kind} chain {key!r}" if key else f"{chain.kind} chain"
    if head is None:  # walk it all the same, from the start, with no end to check against
        found.append(Finding("chain_heads", label, "deleted (no head)"))
        head = _Head(NO_HEAD, GENESIS, 0, GENESIS)
    expected, previous = head.anchor_seq + 1, head.anchor_hash
    # the one link a checkpoint vouches for, as found here (anchor, gap or row): one hash, not the chain's
    vouched = checkpointed[0] if checkpointed else None
    found_hash = {head.anchor_seq: head.anchor_hash, **gaps}.get(vouched) if vouched is not None else None
    last_name = "its start"
    for seq, group in groupby(links, key=lambda link: link.seq):
        rows = list(group)
        report.links[chain.kind] = report.links.get(chain.kind, 0) + len(rows)
        if seq < expected or seq > head.seq:
            found.extend(Finding(chain.table, r.record, "inserted") for r in rows)
            continue
        while expected < seq:
            if expected in gaps:
                previous = gaps[expected]
            else:
                found.append(Finding(chain.table, f"{label} link {expected} (after {last_name})", "deleted"))
                previous = None
            expected += 1
        genuine = None
        if previous is not None:
            genuine = next(
                (r for r in rows if link_hash(chain.kind, r.fields, seq, previous) == r.stored), None
            )
        if genuine is None and previous is None:
            genuine = rows[0]  # the link before is gone: this one's content cannot be checked against it
        if genuine is None:
            found.append(Finding(chain.table, rows[0].record, "edited"))
            genuine = rows[0]
        found.extend(Finding(chain.table, r.record, "inserted") for r in rows if r is not genuine)
        previous = genuine.stored
        if seq == vouched:
            found_hash = previous
        last_name, expected = genuine.record, seq + 1
    while head.seq != NO_HEAD and expected <= head.seq:
        if expected not in gaps:
            found.append(Finding(chain.table, f"{label} link {expected} (after {last_name})", "deleted"))
        expected += 1
    if checkpointed is not None:
        seq, digest, checkpoint = checkpointed
        if head.seq != NO_HEAD and seq > head.seq:
            found.append(
                Finding(
                    chain.table,
                    f"{label} links {head.seq + 1}..{seq} (recorded by checkpoint {checkpoint})",
                    "deleted",
                )
            )
        elif found_hash is not None and found_hash != digest:
            found.append(
                Finding(chain.table, f"{label} link {seq} (recorded by checkpoint {checkpoint})", "edited")
            )


def verify(
    store: Store, public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None = None
) -> VerifyReport:
    """Every chain recomputed and every checkpoint checked; ``public_key`` None: each checkpoint against
    the key stored with it (which proves nothing against someone who could rewrite the database)."""
    report = VerifyReport(
        key_source="checked with the given public key(s)"
        if public_key
        else "checked with the keys stored in the database"
    )
    with store.engine.connect() as connection:
        if connection.dialect.name == "postgresql":  # one snapshot for every query, the center live or not
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            _verify(connection, _trusted(public_key), report)
    return report


def _trusted(
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None,
) -> dict[str, Ed25519PublicKey] | None:
    """The given keys (one, or the current and retired ones of a rotated KEY.pub) by their text."""
    if public_key is None:
        return None
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    return {public_key_text(key): key for key in keys}


def _verify(
    connection: Connection, trusted: dict[str, Ed25519PublicKey] | None, report: VerifyReport
) -> None:
    view = _checkpoints(connection, trusted, report)
    report.checkpoints = view.count
    if view.last_id is not None:
        report.last_checkpoint = f"#{view.last_id} {view.last_hash}"
    for chain in CHAINS:
        report.findings.extend(Finding(chain.table, name, "inserted") for name in chain.unchained(connection))
        heads, gaps = _heads(connection, chain.kind), _gaps(connection, chain.kind)
        seen: set[str] = set()
        for key, links in groupby(chain.links(connection), key=lambda link: link.key):
            seen.add(key)
            _walk_chain(
                chain,
                key,
                links,
                heads.get(key),
                gaps.get(key, {}),
                view.expected.get((chain.kind, key)),
                report,
            )
        for key in heads.keys() - seen:
            _walk_chain(
                chain,
                key,
                [],
                heads[key],
                gaps.get(key, {}),
                view.expected.get((chain.kind, key)),
                report,
            )
        for kind, key in view.expected.keys() - {(chain.kind, k) for k in heads}:
            if kind == chain.kind and key not in seen:
                _walk_chain(chain, key, [], None, {}, view.expected[(kind, key)], report)
        report.chains[chain.kind] = len(heads.keys() | seen)
