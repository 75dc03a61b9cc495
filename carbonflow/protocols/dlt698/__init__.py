"""DL/T 698.45-2017 codec (own implementation): link frames, APDUs, A-XDR data, object table.

The C2 hook is :func:`describe` / :func:`build_request` / :data:`ENCODE_FUNCTIONS`.
"""

from carbonflow.protocols.dlt698.describe import DAR_REASONS, dar_text, describe
from carbonflow.protocols.dlt698.frame import crc16_x25, decode_frame, split_frames
from carbonflow.protocols.dlt698.requests import ENCODE_FUNCTIONS, build_request

__all__ = [
    "DAR_REASONS",
    "ENCODE_FUNCTIONS",
    "build_request",
    "crc16_x25",
    "dar_text",
    "decode_frame",
    "describe",
    "split_frames",
]
