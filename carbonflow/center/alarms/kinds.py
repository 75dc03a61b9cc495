"""Which check each rule kind runs, and which kinds look at what."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from carbonflow.center.alarms.checks import (
    Finding,
    check_balance_residual,
    check_camera_offline,
    check_cascade_mismatch,
    check_clock_offset,
    check_collector_loss,
    check_comm_loss,
    check_data_gap,
    check_meter_mismatch,
    check_rate_of_change,
    check_threshold,
)
from carbonflow.center.alarms.point_checks import check_stuck_value, check_tamper

CHECKS: dict[str, Callable[..., Iterator[Finding]]] = {
    "threshold": check_threshold,
    "rate_of_change": check_rate_of_change,
    "comm_loss": check_comm_loss,
    "collector_loss": check_collector_loss,
    "data_gap": check_data_gap,
    "stuck_value": check_stuck_value,
    "balance_residual": check_balance_residual,
    "meter_mismatch": check_meter_mismatch,
    "clock_offset": check_clock_offset,
    "camera_offline": check_camera_offline,
    "tamper": check_tamper,
    "cascade_mismatch": check_cascade_mismatch,
}
STATE_KINDS = ("comm_loss", "collector_loss", "clock_offset", "camera_offline")  # current state only
POINT_KINDS = ("stuck_value", "tamper")
