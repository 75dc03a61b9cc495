"""Fuzzing every DL/T 698.45 decoder: the only exception allowed on any input is ProtocolError.

Default: 10,000 examples per test; CARBONFLOW_FUZZ_EXAMPLES=100000 for longer runs.
"""

from __future__ import annotations

import contextlib
import os

from dlt698_vectors import ALL_VALID, NEG_698_A
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonflow.protocols.dlt698 import crc16_x25, describe, split_frames
from carbonflow.protocols.dlt698.apdu_decode import decode_apdu
from carbonflow.protocols.dlt698.axdr import Reader, decode_data
from carbonflow.protocols.dlt698.frame import decode_frame
from carbonflow.protocols.errors import ProtocolError

EXAMPLES = int(os.environ.get("CARBONFLOW_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SEEDS = [*ALL_VALID.values(), NEG_698_A]
APDUS = [decode_frame(raw).apdu for raw in ALL_VALID.values()]


def reseal(raw: bytes) -> bytes:
    """Recompute HCS and FCS so a mutation reaches the APDU decoder instead of the CRC check."""
    frame = bytearray(raw)
    if len(frame) < 12 or frame[0] != 0x68:
        return raw
    length = (len(frame) - 2) & 0x3FFF
    frame[1:3] = length.to_bytes(2, "little")
    hcs_at = 6 + (frame[4] & 0x0F) + 1
    if hcs_at + 5 > len(frame):
        return raw
    frame[hcs_at : hcs_at + 2] = crc16_x25(bytes(frame[1:hcs_at])).to_bytes(2, "little")
    frame[-3:-1] = crc16_x25(bytes(frame[1:-3])).to_bytes(2, "little")
    frame[-1] = 0x16
    return bytes(frame)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[position]
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
    return bytes(data)


def only_protocol_errors(call, data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        call(data)


@FUZZ
@given(st.binary(max_size=300))
def test_describe_random_bytes(data):
    only_protocol_errors(describe, data)
    only_protocol_errors(describe, b"\x68" + data)


@FUZZ
@given(mutated(SEEDS))
def test_describe_mutated_reference_frames(data):
    """As mutated, and re-sealed with correct L/HCS/FCS so the APDU and A-XDR decoders are reached."""
    only_protocol_errors(describe, data)
    only_protocol_errors(describe, reseal(data))


@FUZZ
@given(st.one_of(mutated(APDUS), st.binary(max_size=200)))
def test_apdu_and_data_decoders(data):
    only_protocol_errors(decode_apdu, data)
    only_protocol_errors(lambda raw: decode_data(Reader(raw)), data)


@settings(max_examples=max(1, EXAMPLES // 10), deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SEEDS), st.binary(max_size=40)), max_size=6))
def test_stream_splitter_never_raises_and_finds_frames(chunks):
    buffer = bytearray(b"".join(chunks))
    frames = split_frames(buffer)
    for frame in frames:
        assert frame[0] == 0x68 and frame[-1] == 0x16
    intact = [c for c in chunks if c in ALL_VALID.values()]
    if len(intact) == len(chunks):  # no noise: every frame comes out
        assert frames == intact
