"""Fuzzing the IEC 104 decoders: whatever arrives, the only exception is ProtocolError.

Default 10,000 examples per test; set CARBONFLOW_FUZZ_EXAMPLES for longer runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonflow.protocols import ProtocolError
from carbonflow.protocols.iec104 import apci, asdu, describe
from carbonflow.protocols.iec104.asdu import Asdu, InformationObject
from carbonflow.protocols.iec104.cp56time import CP56Time2a
from carbonflow.protocols.iec104.link import Link, LinkConfig

EXAMPLES = int(os.environ.get("CARBONFLOW_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SMALL = settings(max_examples=max(500, EXAMPLES // 5), deadline=None)

VALID_FRAMES = [
    bytes.fromhex(text.replace(" ", ""))
    for text in (
        "68 04 07 00 00 00",
        "68 04 83 00 00 00",
        "68 04 01 00 06 00",
        "68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14",
        "68 12 0A 00 06 00 0D 01 03 00 01 00 A1 0F 00 00 00 48 41 00",
        "68 2A 04 00 02 00 0D 04 14 00 01 00 01 40 00 00 78 DB 3F 00 02 40 00 00 D8 90 42 00 "
        "03 40 00 00 F4 92 42 00 04 40 00 60 50 9A 3F 00",
        "68 12 00 00 00 00 0F 01 25 00 01 00 B9 0B 00 4E 8E 13 00 67",
        "68 12 08 00 04 00 0F 81 25 00 01 00 01 64 00 87 D6 12 00 01",
        "68 12 02 00 02 00 0D 81 14 00 01 00 01 40 00 00 00 F7 42 00",
        # M_ME_TF_1 and M_IT_TB_1 with CP56Time2a, clock sync
        "68 19 00 00 00 00 24 01 03 00 01 00 03 40 00 00 48 96 44 00 92 3B 1E 0C E1 03 1A",
        "68 19 00 00 00 00 25 01 03 00 01 00 02 64 00 10 27 00 00 02 92 3B 1E 0C E1 03 1A",
        "68 14 00 00 00 00 67 01 06 00 01 00 00 00 00 92 3B 1E 0C E1 03 1A",
    )
]


def _decode_all(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        json.dumps(describe(data))


def mutate(seed: int) -> bytes:
    """A reference frame with 1-4 bit flips / truncations / insertions / deletions, chosen by ``seed``
    (a plain PRNG keeps 10,000 examples fast; hypothesis still reports the failing seed)."""
    rng = random.Random(seed)
    frame = bytearray(rng.choice(VALID_FRAMES))
    for _ in range(rng.randint(1, 4)):
        operation = rng.choice(["flip", "flip", "truncate", "insert", "delete", "set"])
        position = rng.randrange(max(1, len(frame)))
        if operation == "flip" and frame:
            frame[position] ^= 1 << rng.randrange(8)
        elif operation == "truncate":
            del frame[position:]
        elif operation == "insert":
            frame[position:position] = rng.randbytes(rng.randint(1, 4))
        elif operation == "delete" and frame:
            del frame[position]
        elif operation == "set" and frame:
            frame[position] = rng.randrange(256)
    return bytes(frame)


mutated_frames = st.integers(0, 2**64).map(mutate)


def test_reference_frames_are_valid_before_mutation():
    for frame in VALID_FRAMES:
        describe(frame)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data):
    _decode_all(data)


@FUZZ_SMALL
@given(st.binary(min_size=4, max_size=249).map(lambda body: bytes([0x68, len(body) + 4 - 4]) + body))
def test_random_bodies_behind_a_plausible_header_raise_only_protocol_error(data):
    _decode_all(data)  # gets past the start byte and, often, the length check


@FUZZ_SMALL
@given(st.sampled_from(sorted(asdu.TYPES)), st.integers(0, 255), st.binary(max_size=120))
def test_random_objects_of_every_known_type_raise_only_protocol_error(type_id, vsq, body):
    data = bytes([type_id, vsq, 3, 0, 1, 0]) + body
    with contextlib.suppress(ProtocolError):
        asdu.decode(data)


@FUZZ
@given(mutated_frames)
def test_mutated_reference_frames_raise_only_protocol_error(data):
    _decode_all(data)


@FUZZ_SMALL
@given(st.lists(mutated_frames, min_size=1, max_size=4), st.integers(1, 7))
def test_link_fed_mutated_streams_raises_only_protocol_error(frames, chunk):
    link = Link("master", LinkConfig())
    stream = b"".join(frames)
    try:
        for start in range(0, len(stream), chunk):
            link.receive(stream[start : start + chunk], now=float(start))
            link.data_to_send()
    except ProtocolError:
        pass


# -- encode/decode round trip over generated ASDUs ------------------------------------------------
times = st.builds(
    CP56Time2a,
    year=st.integers(2000, 2099),
    month=st.integers(1, 12),
    day=st.integers(1, 31),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    milliseconds=st.integers(0, 59999),
    day_of_week=st.integers(0, 7),
    invalid=st.booleans(),
    summer_time=st.booleans(),
)
QDS = st.frozensets(st.sampled_from(["OV", "BL", "SB", "NT", "IV"]))


@st.composite
def information_objects(draw, type_id: int) -> InformationObject:
    kind = asdu.TYPES[type_id].kind
    timed = asdu.TYPES[type_id].timed
    ioa = draw(st.integers(0, asdu.MAX_IOA))
    time = draw(times) if timed else None
    if kind == "normalised":
        value = Decimal(draw(st.integers(-32768, 32767))) / 32768
        return InformationObject(ioa, value, draw(QDS), time)
    if kind == "scaled":
        return InformationObject(ioa, Decimal(draw(st.integers(-32768, 32767))), draw(QDS), time)
    if kind == "float":
        number = draw(st.floats(width=32, allow_nan=False))
        value = asdu.float32_decimal(asdu.decimal_float32(Decimal(repr(number))))
        return InformationObject(ioa, value, draw(QDS), time)
    if kind == "counter":
        flags = draw(st.frozensets(st.sampled_from(["CY", "CA", "IV"])))
        value = Decimal(draw(st.integers(-(2**31), 2**31 - 1)))
        return InformationObject(ioa, value, flags, time, sequence=draw(st.integers(0, 31)))
    if kind in ("single", "double"):
        flags = draw(st.frozensets(st.sampled_from(["BL", "SB", "NT", "IV"])))
        state = draw(st.integers(0, 1 if kind == "single" else 3))
        return InformationObject(ioa, Decimal(state), flags, time)
    if kind == "time":
        return InformationObject(ioa, time=draw(times))
    return InformationObject(ioa, qualifier=draw(st.integers(0, 255)))


@st.composite
def asdus(draw) -> Asdu:
    type_id = draw(st.sampled_from(sorted(asdu.TYPES)))
    size = asdu.IOA_SIZE + asdu.TYPES[type_id].size
    most = min(asdu.MAX_COUNT, (apci.MAX_ASDU_LENGTH - asdu.HEADER_SIZE) // size)
    objects = draw(st.lists(information_objects(type_id), min_size=1, max_size=min(most, 8)))
    return Asdu(
        type_id,
        cot=draw(st.integers(1, 63)),
        common_address=draw(st.integers(0, 0xFFFF)),
        objects=tuple(objects),
        originator=draw(st.integers(0, 255)),
        negative=draw(st.booleans()),
        test=draw(st.booleans()),
    )


@settings(max_examples=max(200, EXAMPLES // 20), deadline=None)  # generation is the costly part
@given(asdus(), st.integers(0, 32767), st.integers(0, 32767))
def test_generated_asdus_round_trip_through_an_i_frame(unit, send_seq, recv_seq):
    frame = apci.encode_i(send_seq, recv_seq, asdu.encode(unit))
    decoded = apci.decode(frame)
    assert (decoded.send_seq, decoded.recv_seq) == (send_seq, recv_seq)
    back = asdu.decode(decoded.asdu)
    assert back.objects == unit.objects
    assert (back.type_id, back.cot, back.common_address, back.originator) == (
        unit.type_id,
        unit.cot,
        unit.common_address,
        unit.originator,
    )
    assert describe(frame)["count"] == len(unit.objects)
