"""Errors of the store, each naming the offending record; the API turns them into JSON errors."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError


class StoreError(Exception):
    """Base: a request the store refuses.  ``status_code`` is the HTTP answer at the API edge."""

    status_code = 400

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class UnknownCollectorError(StoreError):
    status_code = 401


class BadSignatureError(StoreError):
    status_code = 401


class InvalidBatchError(StoreError):
    """Schema or content error in a batch (bad decimal, naive ts, unknown point, foreign device)."""

    status_code = 422


class BatchConflictError(StoreError):
    """A batch_id seen before with different content: storing either would lose data silently."""

    status_code = 409


class NotFoundError(StoreError):
    status_code = 404


class DatabaseUnavailableError(StoreError):
    status_code = 503


# driver errors that mean "the database is not reachable now" (the API answers 503, retry later)
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (OperationalError,)
