"""Carbon data out to the systems that consume it (docs/interop.md):

* ``GET /api/v1/exports/enterprise`` — per user and local calendar period: electricity consumed,
  location-based and (month, year) market-based Scope 2 emissions, origin by fuel; for a plant's or
  company's carbon accounting system;
* ``GET /api/v1/exports/quota`` — monthly / annual electricity-carbon totals per region, industry and
  region × industry, for quota allocation;
* ``POST /api/v1/exports/table`` — a table as a page of the UI showed it (search and filters applied,
  labels and values in the user's language) back as XLSX: the rows come from the page, nothing is read
  from the store, so reading is all it needs.

``format`` = json (default), csv, xlsx or parquet; every format names the data version.  Region scope
(policy ``report``/``region``): only the users inside the ``region`` query parameter, which defaults to
the user's own region and is refused outside it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from carbonflow.center.api.deps import StoreDep
from carbonflow.center.reports.build import ReportInputError
from carbonflow.center.reports.contracts import ContractsError, load_contracts
from carbonflow.center.reports.enterprise import enterprise_export, flat_rows
from carbonflow.center.reports.quota import QUOTA_COLUMNS, quota_export
from carbonflow.center.reports.tabular import TABLE_MEDIA_TYPES, shown_table_xlsx, write_table
from carbonflow.center.store import load_directory

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
TableFormat = Literal["json", "csv", "xlsx", "parquet"]
USERS_QUERY = Query(None, description="load ids (repeat the parameter); default: every user in the region")


def _file(data: bytes, format: str, name: str) -> Response:
    headers = {} if format == "json" else {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    return Response(data, media_type=TABLE_MEDIA_TYPES[format], headers=headers)


@router.get("/enterprise")
def get_enterprise_export(
    request: Request,
    store: StoreDep,
    period: Literal["day", "month", "year"] = "month",
    start: str = Query(..., max_length=10, description="2026-12-01 (day), 2026-12 (month) or 2026 (year)"),
    user: list[str] | None = USERS_QUERY,
    format: TableFormat = "json",
    region: str = "",
) -> Response:
    """Electricity carbon per user for enterprise carbon accounting (GHG Protocol Scope 2)."""
    settings = request.app.state.settings
    try:
        contracts = load_contracts(settings.green_contracts_file, {u["id"] for u in load_directory(store)})
        export = enterprise_export(
            store, period, start, time_zone=settings.time_zone, users=user, region=region, contracts=contracts
        )
    except ReportInputError as error:
        raise HTTPException(400, f"bad export request: {error.field}: {error.message}") from None
    except ContractsError as error:
        raise HTTPException(409, f"green contracts configuration: {error}") from None
    name = f"carbonflow-enterprise-{period}-{start}"
    if format == "json":
        data = write_table("json", [], export.users, export.metadata(), title="users")
    else:
        columns, rows = flat_rows(export)
        data = write_table(format, columns, rows, export.metadata(), title="users")
    return _file(data, format, name)


@router.get("/quota")
def get_quota_export(
    request: Request,
    store: StoreDep,
    period: Literal["month", "year"] = "year",
    start: str = Query(..., max_length=7, description="2026-12 (month) or 2026 (year)"),
    region_depth: int = Query(2, ge=1, le=3),
    format: TableFormat = "json",
    region: str = "",
) -> Response:
    """Monthly / annual electricity-carbon totals per region, industry and region × industry."""
    settings = request.app.state.settings
    try:
        export = quota_export(
            store, period, start, time_zone=settings.time_zone, region_depth=region_depth, region=region
        )
    except ReportInputError as error:
        raise HTTPException(400, f"bad export request: {error.field}: {error.message}") from None
    data = write_table(format, QUOTA_COLUMNS, export.rows, export.metadata(), title="totals")
    return _file(data, format, f"carbonflow-quota-{period}-{start}")


class ShownTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("table", pattern=r"^[A-Za-z0-9_.-]{1,100}$")  # the file's name, without .xlsx
    columns: list[Annotated[str, Field(max_length=200)]] = Field(min_length=1, max_length=200)
    rows: list[list[Annotated[str, Field(max_length=10_000)] | None]] = Field(max_length=200_000)


@router.post("/table")
def post_table_export(table: ShownTable) -> Response:
    """A table as the page showed it, as XLSX: numbers as numbers formatted to the digits shown."""
    for index, row in enumerate(table.rows, start=1):
        if len(row) != len(table.columns):
            raise HTTPException(
                400, f"bad table: row {index} has {len(row)} cells for {len(table.columns)} columns"
            )
    return _file(shown_table_xlsx(table.columns, table.rows, table.name), "xlsx", table.name)
