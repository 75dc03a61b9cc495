"""Errors and the retry policy shared by every protocol client (run by ``base.with_retries``)."""

from __future__ import annotations

from dataclasses import dataclass


class DeviceError(Exception):
    """A device could not be read or commanded; the message names the device and the request."""


class DeviceTimeout(DeviceError):
    """No (valid) answer within the timeout, after all retries."""


class DeviceRejected(DeviceError):
    """The device answered with an exception/error reply (the message carries its reason)."""


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 2.0  # per attempt
    retries: int = 2  # attempts after the first
    backoff_s: float = 0.2  # doubled after each failed attempt
