"""The sans-IO IEC 104 link state machine: windows, acknowledgements and the t1/t2/t3 timers,
driven with made-up times (no sockets, no sleeping)."""

from __future__ import annotations

import pytest

from carbonflow.protocols.iec104 import apci
from carbonflow.protocols.iec104.apci import SFrame, UFrame, UFunction
from carbonflow.protocols.iec104.link import (
    Acknowledged,
    AsduReceived,
    Link,
    LinkConfig,
    LinkError,
    LinkTimeout,
    Started,
    Stopped,
    TestConfirmed,
)

GI_ASDU = bytes.fromhex("64 01 06 00 01 00 00 00 00 14".replace(" ", ""))
GI_ACTCON_ASDU = bytes.fromhex("64 01 07 00 01 00 00 00 00 14".replace(" ", ""))
STARTDT_ACT = apci.encode_u(UFunction.STARTDT_ACT)
STARTDT_CON = apci.encode_u(UFunction.STARTDT_CON)


def started_pair() -> tuple[Link, Link]:
    master, outstation = Link("master"), Link("outstation")
    master.start(0.0)
    outstation.receive(master.data_to_send(), 0.0)
    master.receive(outstation.data_to_send(), 0.0)
    return master, outstation


def i_frame(send_seq: int, recv_seq: int = 0) -> bytes:
    return apci.encode_i(send_seq, recv_seq, GI_ASDU)


def sent_frames(link: Link) -> list:
    buffer = bytearray(link.data_to_send())
    return [apci.decode(frame) for frame in apci.split(buffer)]


def test_startdt_handshake_activates_both_ends():
    master, outstation = Link("master"), Link("outstation")
    master.start(0.0)
    assert master.data_to_send() == STARTDT_ACT and not master.can_send
    assert outstation.receive(STARTDT_ACT, 0.0) == [Started()]
    assert outstation.data_to_send() == STARTDT_CON
    assert master.receive(STARTDT_CON, 0.0) == [Started()]
    assert master.can_send and outstation.can_send


def test_gi_exchange_reproduces_reference_frames_104_3_and_104_4():
    master, outstation = started_pair()
    master.send_asdu(GI_ASDU, 1.0)
    request = master.data_to_send()
    assert request.hex(" ").upper() == "68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14"
    assert outstation.receive(request, 1.0) == [AsduReceived(GI_ASDU, 0)]
    outstation.send_asdu(GI_ACTCON_ASDU, 1.0)
    assert outstation.data_to_send().hex(" ").upper() == "68 0E 00 00 02 00 64 01 07 00 01 00 00 00 00 14"


def test_no_i_frame_before_data_transfer_is_started():
    link = Link("outstation")
    with pytest.raises(LinkError, match="not started"):
        link.send_asdu(GI_ASDU, 0.0)


def test_k_window_blocks_the_thirteenth_frame_until_acknowledged():
    _master, outstation = started_pair()
    for _ in range(12):
        outstation.send_asdu(GI_ASDU, 0.0)
    assert not outstation.can_send and outstation.unacknowledged == 12
    with pytest.raises(LinkError, match="window"):
        outstation.send_asdu(GI_ASDU, 0.0)
    assert outstation.receive(apci.encode_s(5), 1.0) == [Acknowledged(5)]
    assert outstation.can_send and outstation.unacknowledged == 7


def test_w_received_frames_are_acknowledged_with_an_s_frame():
    master, _outstation = started_pair()
    for seq in range(7):
        master.receive(i_frame(seq), 0.0)
    assert master.data_to_send() == b""  # 7 < w
    master.receive(i_frame(7), 0.0)
    assert sent_frames(master) == [SFrame(8)]


def test_t2_acknowledges_a_lone_frame_no_later_than_t2():
    master, _ = started_pair()
    master.receive(i_frame(0), 100.0)
    assert master.next_deadline() == 110.0
    master.on_timer(109.9)
    assert master.data_to_send() == b""
    master.on_timer(110.0)
    assert sent_frames(master) == [SFrame(1)]


def test_an_outgoing_i_frame_carries_the_acknowledgement():
    master, _outstation = started_pair()
    for seq in range(3):
        master.receive(i_frame(seq), 0.0)
    master.send_asdu(GI_ASDU, 1.0)
    (frame,) = sent_frames(master)
    assert (frame.send_seq, frame.recv_seq) == (0, 3)
    master.on_timer(10.0)  # t2 no longer armed: nothing left to acknowledge
    assert master.data_to_send() == b""


def test_t1_expiry_on_an_unacknowledged_i_frame_fails_the_link():
    _master, outstation = started_pair()
    outstation.send_asdu(GI_ASDU, 5.0)
    assert outstation.next_deadline() == 20.0  # t1 runs out at 5 + 15
    assert outstation.on_timer(19.9) == []
    (event,) = outstation.on_timer(20.0)
    assert isinstance(event, LinkTimeout) and event.timer == "t1" and "N(S)=0" in event.reason
    assert outstation.failed and outstation.next_deadline() is None and not outstation.can_send


def test_unconfirmed_startdt_times_out_on_t1():
    master = Link("master", LinkConfig(t1_s=0.5, t2_s=0.2, t3_s=5))
    master.start(0.0)
    (event,) = master.on_timer(0.5)
    assert isinstance(event, LinkTimeout) and "STARTDT act" in event.reason


def test_t3_idle_sends_testfr_and_t1_supervises_it():
    master, _ = started_pair()
    assert master.next_deadline() == 20.0
    assert master.on_timer(20.0) == []
    assert sent_frames(master) == [UFrame(UFunction.TESTFR_ACT)]
    assert master.receive(apci.encode_u(UFunction.TESTFR_CON), 21.0) == [TestConfirmed()]
    master.on_timer(41.0)  # t3 again after the confirmation
    assert sent_frames(master) == [UFrame(UFunction.TESTFR_ACT)]
    (event,) = master.on_timer(56.0)  # 41 + t1, no confirmation
    assert isinstance(event, LinkTimeout)


def test_any_received_frame_restarts_t3():
    master, _ = started_pair()
    master.receive(apci.encode_s(0), 15.0)
    assert master.next_deadline() == 35.0


def test_testfr_act_is_confirmed():
    link = Link("outstation")
    link.receive(apci.encode_u(UFunction.TESTFR_ACT), 0.0)
    assert link.data_to_send() == apci.encode_u(UFunction.TESTFR_CON)


def test_out_of_order_send_sequence_number_is_a_link_error():
    master, _ = started_pair()
    with pytest.raises(LinkError, match="expected N\\(S\\)=0"):
        master.receive(i_frame(1), 0.0)


def test_acknowledging_frames_never_sent_is_a_link_error():
    _master, outstation = started_pair()
    outstation.send_asdu(GI_ASDU, 0.0)
    with pytest.raises(LinkError, match="N\\(R\\)=2"):
        outstation.receive(apci.encode_s(2), 0.0)


def test_sequence_numbers_wrap_at_2_to_15():
    master, outstation = started_pair()
    outstation.send_seq = 32766
    outstation.send_asdu(GI_ASDU, 0.0)
    outstation.send_asdu(GI_ASDU, 0.0)
    frames = sent_frames(outstation)
    assert [frame.send_seq for frame in frames] == [32766, 32767]
    assert outstation.send_seq == 0
    assert outstation.receive(apci.encode_s(0), 0.0) == [Acknowledged(2)]
    master.recv_seq = 32767
    master.receive(i_frame(32767), 0.0)
    assert master.recv_seq == 0


def test_stopdt_is_confirmed_only_after_our_frames_are_acknowledged():
    _master, outstation = started_pair()
    outstation.send_asdu(GI_ASDU, 0.0)
    outstation.data_to_send()
    assert outstation.receive(apci.encode_u(UFunction.STOPDT_ACT), 1.0) == []
    assert outstation.data_to_send() == b"" and not outstation.can_send
    assert outstation.receive(apci.encode_s(1), 1.0) == [Acknowledged(1), Stopped()]
    assert outstation.data_to_send() == apci.encode_u(UFunction.STOPDT_CON)


def test_master_stop_acknowledges_received_frames_first():
    master, _ = started_pair()
    master.receive(i_frame(0), 0.0)
    master.stop(1.0)
    assert sent_frames(master) == [SFrame(1), UFrame(UFunction.STOPDT_ACT)]
    assert master.receive(apci.encode_u(UFunction.STOPDT_CON), 1.0) == [Stopped()]
    assert not master.started


def test_bytes_may_arrive_in_pieces():
    master, _ = started_pair()
    frame = i_frame(0)
    assert master.receive(frame[:3], 0.0) == []
    assert master.receive(frame[3:], 0.0) == [AsduReceived(GI_ASDU, 0)]


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"w": 13}, {"t1_s": 5, "t2_s": 10}, {"t3_s": 0}])
def test_invalid_configurations_are_refused(kwargs):
    with pytest.raises(ValueError):
        LinkConfig(**kwargs)
