"""Carbon reports on demand: ``POST /api/v1/reports`` builds one (CSV, XLSX or PDF) and records it with
the data version it was made from; ``GET /api/v1/reports`` lists them; ``GET /api/v1/reports/{id}``
downloads the file.

Region scope (policy ``report``/``region``): the ``region`` query parameter — defaulted to the user's
own region by ``deps.authorize`` and refused outside it — is the region a new report covers (a user
scoped to a region can only make reports of it) and the prefix the list and the download are limited
to; a report outside it is answered 404, like one that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from carbonflow.center.api.deps import StoreDep, UserDep
from carbonflow.center.api.policy import within
from carbonflow.center.api.routes._common import jsonable
from carbonflow.center.reports.build import ReportInputError
from carbonflow.center.reports.render import MEDIA_TYPES
from carbonflow.center.reports.service import download_name, make_report, report_directory
from carbonflow.center.store import get_report, list_reports

router = APIRouter(prefix="/api/v1", tags=["reports"])


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Literal["day", "month", "year"]
    start: str = Field(max_length=10, description="2026-12-01 (day), 2026-12 (month) or 2026 (year)")
    format: Literal["csv", "xlsx", "pdf"] = "xlsx"
    industry: str | None = Field(default=None, max_length=100)
    plant: str | None = Field(default=None, max_length=100)
    user: str | None = Field(default=None, max_length=100, description="a user (load) id")


def report_dir(request: Request) -> Path:
    return report_directory(request.app.state.settings)


def bad_request(error: ReportInputError) -> HTTPException:
    return HTTPException(400, f"bad report request: {error.field}: {error.message}")


def _public_row(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "file_name"}
    out["download"] = f"/api/v1/reports/{row['id']}"
    return jsonable(out)


@router.post("/reports", status_code=201)
def post_report(
    body: ReportRequest, request: Request, store: StoreDep, user: UserDep, region: str = ""
) -> dict:
    """Build a report now.  Scope: ``region`` (query), or one of ``industry``, ``plant``, ``user``
    (body) for a user of the whole center; none of them: the whole center."""
    region = region.strip("/")
    scopes = [
        (k, v) for k, v in (("industry", body.industry), ("plant", body.plant), ("user", body.user)) if v
    ]
    if len(scopes) > 1:
        raise HTTPException(400, "bad report request: give at most one of industry, plant, user")
    if scopes and region:
        raise HTTPException(
            400,
            f"bad report request: {scopes[0][0]}: a region-scoped report cannot also be per {scopes[0][0]}",
        )
    kind, value = scopes[0] if scopes else (("region", region) if region else ("all", None))
    settings = request.app.state.settings
    try:
        row, _ = make_report(
            store,
            report_dir(request),
            body.period,
            body.start,
            body.format,
            time_zone=settings.time_zone,
            scope_kind=kind,
            scope_value=value,
            actor=user,
        )
    except ReportInputError as error:
        raise bad_request(error) from None
    return _public_row(row)


@router.get("/reports")
def get_reports(store: StoreDep, region: str = "") -> dict:
    """Reports of the region (and inside it), newest first."""
    return {"items": [_public_row(r) for r in list_reports(store, region=region.strip("/"))]}


@router.get("/reports/{report_id}")
def download_report(report_id: str, request: Request, store: StoreDep, region: str = "") -> FileResponse:
    row = get_report(store, report_id)
    if row is None or not within(row["region"] or None, region.strip("/")):
        raise HTTPException(404, f"no report {report_id!r}")
    path = report_dir(request) / row["file_name"]
    if not path.is_file():
        raise HTTPException(410, f"the file of report {report_id!r} is gone")
    return FileResponse(path, media_type=MEDIA_TYPES[row["format"]], filename=download_name(row))
