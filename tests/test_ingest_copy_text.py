"""The COPY text block of a batch (store/staging.py ``copy_text_block``) against the generic form it
replaced — every field through its column's bind processor, then ``_copy_text`` — on awkward values:
escapes in ids, negative and exponent decimals, None, mixed time zones, repeated timestamps."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial

import pytest
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects.postgresql import psycopg

from carbonflow.center.store.schema import Reading
from carbonflow.center.store.staging import _COLUMNS, _copy_text, copy_text_block

DIALECT = psycopg.dialect()


def generic_block(rows):
    """The block as copy_readings wrote it before (main f265b96)."""
    binds = []
    for name in _COLUMNS:
        column_type = Reading.__table__.c[name].type
        is_decorated = isinstance(column_type, TypeDecorator)
        binds.append(
            partial(column_type.process_bind_param, dialect=DIALECT) if is_decorated else (lambda v: v)
        )
    return "".join(
        f"{ordinal}\t"
        + "\t".join(_copy_text(bind(row.get(name))) for bind, name in zip(binds, _COLUMNS, strict=True))
        + "\n"
        for ordinal, row in enumerate(rows)
    )


T0 = datetime(2025, 3, 1, 0, 15, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
AWKWARD = [
    ("dev-1/p", T0, "12.500", "good"),
    ("dev\\1/p\ttab", T0, "-0.0001", "estimated"),
    ("dev\n1/p\rcr", T0.astimezone(PLUS2), "1E+3", None),
    ("dev-1/ünï", T0 + timedelta(microseconds=7), "-0", "stale"),
    ("dev-1/q", T0 + timedelta(seconds=900), None, "invalid"),
    ("dev-1/r", (T0 + timedelta(seconds=900)).astimezone(PLUS2), "1.0", "good"),
    ("dev-1/s", T0, "1", "good"),
    ("dev-1/t", T0, "123456789012345678901234567890.123456789", "good"),
    ("dev-1/u", T0, "-1.5e-7", "good"),
    ("dev-1/v", T0, "+5", "good"),
    ("dev-1/w", T0, " 1_0.50 ", "good"),
    ("dev-1/x", T0, "0E-12", "good"),
    ("dev-1/p", T0, "12.500", "good"),  # repeated row: formatted again, not dropped
]


def rows_of(readings, received_at=T0, batch_id="batch\\-1\t"):
    return [
        {
            "point_id": point,
            "ts": ts,
            "value": value,
            "quality": quality,
            "received_at": received_at,
            "batch_id": batch_id,
            "chain_seq": seq,
            "chain_hash": f"{seq:064x}",
        }
        for seq, (point, ts, value, quality) in enumerate(readings, start=1)
    ]


def test_block_is_the_generic_form_on_awkward_values():
    rows = rows_of(AWKWARD)
    assert copy_text_block(DIALECT, rows) == generic_block(rows)
    assert copy_text_block(DIALECT, rows).splitlines()[1].startswith("1\tdev\\\\1/p\\ttab\t")


def test_block_is_the_generic_form_when_rows_differ_in_received_at_and_batch():
    rows = rows_of(AWKWARD) + rows_of(AWKWARD[:3], received_at=T0.astimezone(PLUS2), batch_id="other")
    rows[-1].update(chain_seq=None, chain_hash=None, value=Decimal("2.50"))
    assert copy_text_block(DIALECT, rows) == generic_block(rows)


@pytest.mark.parametrize(
    ("field", "bad", "error"),
    [
        ("ts", datetime(2025, 3, 1), ValueError),
        ("value", "NaN", ValueError),
        ("value", "-Infinity", ValueError),
        ("value", "1,5", ArithmeticError),
        ("chain_hash", "zz", ValueError),
    ],
)
def test_block_refuses_what_the_bind_processors_refuse(field, bad, error):
    rows = rows_of(AWKWARD[:2])
    rows[1][field] = bad
    with pytest.raises(error):
        generic_block(rows)
    with pytest.raises(error):
        copy_text_block(DIALECT, rows)
