"""Every error leaves the API as JSON ``{"error": "<one line>", "detail": ...}`` — never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from carbonflow.center.store import DATABASE_DOWN_ERRORS, StoreError

log = logging.getLogger(__name__)


def error_response(
    status: int, error: str, detail: object = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, error: StoreError) -> JSONResponse:
        return error_response(error.status_code, error.message, error.detail)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, error: HTTPException) -> JSONResponse:
        text = error.detail if isinstance(error.detail, str) else f"HTTP {error.status_code}"
        detail = None if isinstance(error.detail, str) else error.detail
        return error_response(error.status_code, text, detail, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return error_response(
            422,
            f"invalid request: {where}: {first.get('msg', 'invalid')}",
            [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors],
        )

    async def _database_down(_request: Request, error: Exception) -> JSONResponse:
        log.error("database error: %s", error)
        return error_response(503, "database unavailable, retry later")

    for error_type in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(error_type, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error ({type(error).__name__})")
