"""Multi-dimensional analysis (``reports/analysis.py``): ``GET /api/v1/analysis`` — one period's carbon
grouped by region, industry, voltage level, user, plant, fuel or unit, ranked, with month-on-month and
year-on-year changes; ``keys=A,B`` puts groups side by side.  Energy-weighted throughout.

Region scope (policy ``read``/``region``): the ``region`` parameter is defaulted to the user's own region
and refused outside it, so a regional user analyses only the elements inside their region.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request

from carbonflow.center.api.deps import StoreDep
from carbonflow.center.api.routes._common import jsonable, split_ids
from carbonflow.center.api.routes.reports import bad_request
from carbonflow.center.reports.analysis import AnalysisRequest, analyse
from carbonflow.center.reports.build import ReportInputError
from carbonflow.center.reports.disclosure import default_period

router = APIRouter(prefix="/api/v1", tags=["analysis"])


@router.get("/analysis")
def analysis(
    request: Request,
    store: StoreDep,
    dimension: Literal["region", "industry", "voltage", "user", "plant", "fuel", "unit"] = "region",
    side: Literal["consumption", "generation"] | None = None,
    period: Literal["day", "month", "year"] | None = None,
    start: str | None = Query(None, max_length=10, description="2026-12-01 | 2026-12 | 2026"),
    region: str = "",
    region_depth: int | None = Query(None, ge=1, le=3),
    keys: str | None = Query(None, max_length=2000, description="comma-separated groups, side by side"),
    order: Literal["carbon", "energy", "intensity"] = "carbon",
    top: int | None = Query(None, ge=1, le=10_000),
) -> dict:
    """Without ``period``/``start``: the month holding the latest metered interval.  ``side`` defaults
    to the side the dimension belongs to (plant, fuel, unit: generation; the others: consumption)."""
    time_zone = request.app.state.settings.time_zone
    try:
        if start is None:
            default, start = default_period(store, time_zone)
            if period not in (None, default):
                raise ReportInputError("start", f"give the {period} to analyse")
            period = default
        side = side or ("generation" if dimension in ("plant", "fuel", "unit") else "consumption")
        wanted = AnalysisRequest(
            dimension, period or "month", start, side, region.strip("/") or None, region_depth,
            tuple(split_ids(keys) or ()), order, top,
        )  # fmt: skip
        return jsonable(analyse(store, wanted, time_zone=time_zone))
    except ReportInputError as error:
        raise bad_request(error) from None
