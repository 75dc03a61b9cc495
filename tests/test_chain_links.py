"""Chain links from a prefix encoded before the heads are locked (store/chain.py ``link_prefix`` /
``links_after``) are ``link_hash``'s links, byte for byte — the hashes every stored chain is verified
against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from carbonflow.center.store.chain import (
    GENESIS,
    READING,
    link_hash,
    link_prefix,
    links_after,
    reading_fields,
)


def _reference(kind, items, heads):
    moved, links = {}, []
    for key, fields in items:
        seq, previous = moved.get(key) or heads[key]
        seq += 1
        digest = link_hash(kind, fields, seq, previous)
        moved[key] = (seq, digest)
        links.append((seq, digest))
    return links, moved


def test_links_from_prefixes_are_the_link_hashes():
    t0 = datetime(2026, 3, 1, 0, 15, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    points = ["M1/1", 'q"uote\\back', "tab\tnl\n", "Zähler/é", "[{]}", "\u2028sep", "x" * 240]
    values = ["-0.000", "1E+3", "+5", "-1.5e-7", "1_000.5", "123456789012345678901234567890.5", None]
    items = [
        (point, reading_fields(point, t0 + timedelta(minutes=k), value, quality))
        for k, (point, value, quality) in enumerate(
            (p, v, q) for p in points for v in values for q in ("good", "estimated", "invalid", "suspect")
        )
    ]
    items += [(points[0], [points[0], "2026-03-01T00:00:00.000000Z", "7", "good"])] * 3  # one chain, 3 links
    items.append(("d", ["d", datetime(2026, 1, 1, tzinfo=UTC).isoformat(), str(Decimal("1.10")), "good"]))
    heads = {key: (0, GENESIS) for key, _ in items}
    heads[points[1]] = (41, "ab" * 32)
    heads[points[3]] = (2**40, "0f" * 32)
    prefixed = [(key, link_prefix(READING, fields)) for key, fields in items]
    assert links_after(prefixed, heads) == _reference(READING, items, heads)
    for kind in ("interval", "audit", "ключ"):
        assert links_after([(k, link_prefix(kind, f)) for k, f in items[:50]], heads) == _reference(
            kind, items[:50], heads
        )
