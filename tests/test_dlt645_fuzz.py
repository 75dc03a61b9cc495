"""Fuzz the DL/T 645 decoders: random and mutated bytes may only ever raise ProtocolError.

Default 10,000 examples per test; set CARBONFLOW_FUZZ_EXAMPLES for longer runs.  Mutated frames get their
checksum repaired half of the time, so the mutations reach the payload decoders instead of all dying at
the checksum check.
"""

from __future__ import annotations

import os

from dlt645_vectors import ALL_FRAMES, NEG_645_A
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonflow.protocols import ProtocolError
from carbonflow.protocols.dlt645 import (
    DEFAULT_TABLE,
    build_request,
    describe,
    freeze_request,
    parse_frame,
    parse_reply,
    parse_request,
    read_reply,
    take_frame,
    time_sync_request,
    write_raw_request,
)
from carbonflow.protocols.dlt645.frame import checksum

EXAMPLES = int(os.environ.get("CARBONFLOW_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

ITEMS = list(DEFAULT_TABLE)
SEEDS = [frame for _, frame in ALL_FRAMES] + [
    NEG_645_A,
    freeze_request(),
    time_sync_request("2024-02-29 23:59:59"),
    write_raw_request("000102030425", "F0030000", bytes.fromhex("035705"), "02000000", "00000000"),
    read_reply("201000000012", "0001FF00", bytes(20), follow_up=True),
    read_reply("201000000012", "0001FF00", bytes(8), seq=3),
    read_reply("000000000161", "01010000", bytes.fromhex("12250030132902 24".replace(" ", ""))),
]


def repair_checksum(data: bytes) -> bytes:
    """Make a mutated frame's CS (and end byte) consistent with its L so decoding goes past the checksum."""
    body = data.lstrip(b"\xfe")
    if len(body) < 12 or body[0] != 0x68:
        return data
    size = 12 + body[9]
    if len(body) < size:
        return data
    fixed = bytearray(body[:size])
    fixed[-2] = checksum(fixed[:-2])
    fixed[-1] = 0x16
    return data[: len(data) - len(body)] + bytes(fixed)


@st.composite
def mutated_frames(draw) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set", "length"]))
        position = draw(st.integers(0, max(0, len(frame) - 1)))
        if kind == "flip" and frame:
            frame[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del frame[position:]
        elif kind == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and frame:
            del frame[position]
        elif kind == "set" and frame:
            frame[position] = draw(st.sampled_from([0x00, 0x16, 0x32, 0x33, 0x68, 0xCC, 0xFE, 0xFF]))
        elif kind == "length":
            start = len(frame) - len(frame.lstrip(b"\xfe"))
            if start + 9 < len(frame):
                frame[start + 9] = draw(st.integers(0, 255))
    data = bytes(frame)
    return repair_checksum(data) if draw(st.booleans()) else data


def decode_everything(data: bytes) -> None:
    """Run every decoder on ``data``; only ProtocolError may escape, and what decodes must re-encode."""
    try:
        document = describe(data)
    except ProtocolError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert document["protocol"] == "dlt645"
    frame = parse_frame(data)
    assert frame.encode() == data
    try:
        reply = parse_reply(frame) if frame.is_reply else None
        if reply is not None and reply.di is not None:
            reply.value(DEFAULT_TABLE)
        if not frame.is_reply:
            parse_request(frame)
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    decode_everything(data)


@FUZZ
@given(st.binary(max_size=60).map(lambda data: b"\x68" + data[:6] + b"\x68" + data[6:]))
def test_random_bytes_shaped_like_a_header_only_raise_protocol_error(data: bytes) -> None:
    decode_everything(repair_checksum(data + b"\x00\x16"))


@FUZZ
@given(mutated_frames())
def test_mutated_reference_frames_only_raise_protocol_error(data: bytes) -> None:
    decode_everything(data)


@settings(max_examples=max(1000, EXAMPLES // 4), deadline=None)
@given(st.sampled_from(ITEMS), st.binary(max_size=40))
def test_item_decoders_only_raise_protocol_error(item, payload: bytes) -> None:
    try:
        value = item.decode(payload)
    except ProtocolError:
        return
    assert item.encode(value) == payload  # what decodes re-encodes to the same bytes


VALID_SEEDS = [seed for seed in SEEDS if seed is not NEG_645_A]
NOISE = st.binary(max_size=12).map(lambda noise: noise.replace(b"\x68", b""))


@settings(max_examples=max(1000, EXAMPLES // 10), deadline=None)
@given(st.lists(st.one_of(st.sampled_from(VALID_SEEDS), NOISE), max_size=8), st.integers(1, 9))
def test_stream_splitter_recovers_every_frame_between_noise(pieces: list[bytes], chunk: int) -> None:
    """Frames split across reads, with FE preambles and noise (no 68H) between them, all come out."""
    stream = b"".join(pieces)
    buffer = bytearray()
    frames: list[bytes] = []
    for start in range(0, len(stream), chunk):
        buffer.extend(stream[start : start + chunk])
        while (frame := take_frame(buffer)) is not None:
            frames.append(frame)
    assert frames == [piece.lstrip(b"\xfe") for piece in pieces if piece in VALID_SEEDS]


@settings(max_examples=max(1000, EXAMPLES // 10), deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SEEDS), st.binary(max_size=12)), max_size=8))
def test_stream_splitter_never_hands_out_a_broken_frame(pieces: list[bytes]) -> None:
    buffer = bytearray(b"".join(pieces))
    while (frame := take_frame(buffer, [])) is not None:
        parse_frame(frame)


@settings(max_examples=max(1000, EXAMPLES // 10), deadline=None)
@given(
    st.sampled_from(["read", "read-follow-up", "read-address", "write", "time-sync", "freeze", "bogus"]),
    st.dictionaries(
        st.sampled_from(
            [
                "address",
                "di",
                "seq",
                "value",
                "data",
                "password",
                "operator",
                "time",
                "when",
                "preamble",
                "other",
            ]
        ),
        st.one_of(st.text(max_size=14), st.sampled_from(["000102030425", "00010000", "F0030000", "1", "99"])),
        max_size=6,
    ),
)
def test_build_request_only_raises_protocol_error(function: str, params: dict[str, str]) -> None:
    try:
        frame = build_request(function, params)
    except ProtocolError:
        return
    assert describe(frame)["direction"] == "request"
