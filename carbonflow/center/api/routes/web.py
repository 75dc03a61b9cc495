"""The web UI: static files of ``carbonflow/center/web`` (plain JS, vendored ECharts; no CDN).

The page itself is public (it is the login page until a session exists); every datum it shows comes from
``/api/v1`` endpoints that require the session.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parents[2] / "web"
router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=WEB)
