"""Public disclosure, no login: the carbon of electricity by region, by industry and for the key users
who consented (``reports/disclosure.py`` — aggregates behind fewer than ``disclosure_min_users`` users
are suppressed), the public page at ``/public``, and the immutable, versioned releases: an analyst or
admin publishes one (``POST /api/v1/releases``), anyone reads or downloads it.

Period parameters: ``period`` (day | month | year) and ``start`` (2026-12-01 | 2026-12 | 2026); both
omitted: the month holding the latest metered interval.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from carbonflow.center.api.deps import StoreDep, UserDep
from carbonflow.center.api.routes._common import jsonable
from carbonflow.center.api.routes.reports import bad_request
from carbonflow.center.api.routes.web import WEB
from carbonflow.center.reports.build import ReportInputError
from carbonflow.center.reports.disclosure import disclosure
from carbonflow.center.store import Store, get_release, list_releases, save_release

router = APIRouter(tags=["public"])
V1 = "/api/v1"


def _content(request: Request, store: Store, period: str | None, start: str | None) -> dict:
    settings = request.app.state.settings
    try:
        return disclosure(
            store,
            period,
            start,
            time_zone=settings.time_zone,
            min_users=settings.disclosure_min_users,
            consent=frozenset(settings.disclosure_consent),
        )
    except ReportInputError as error:
        raise bad_request(error) from None


def _part(content: dict, name: str) -> dict:
    head = {
        k: content[k] for k in ("period", "start", "from", "to", "min_users", "data_version", "intervals")
    }
    return jsonable({**head, "total": content["total"], "items": content[name]})


@router.get("/public", include_in_schema=False)
def public_page() -> FileResponse:
    return FileResponse(WEB / "public.html", headers={"Cache-Control": "no-cache"})


@router.get(f"{V1}/public/regions")
def public_regions(request: Request, store: StoreDep, period: str | None = None, start: str | None = None):
    """Regions as a tree (``parent``, ``depth``: 1 province, 2 city, 3 county); suppressed ones carry
    no figures."""
    return _part(_content(request, store, period, start), "regions")


@router.get(f"{V1}/public/industries")
def public_industries(request: Request, store: StoreDep, period: str | None = None, start: str | None = None):
    return _part(_content(request, store, period, start), "industries")


@router.get(f"{V1}/public/key-users")
def public_key_users(request: Request, store: StoreDep, period: str | None = None, start: str | None = None):
    """Only the users who consented to publication (``disclosure_consent``)."""
    return _part(_content(request, store, period, start), "key_users")


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str | None = Field(default=None, max_length=10)
    start: str | None = Field(default=None, max_length=10)
    note: str | None = Field(default=None, max_length=1000)


@router.post(f"{V1}/releases", status_code=201)
def publish_release(body: ReleaseRequest, request: Request, store: StoreDep, user: UserDep) -> dict:
    """Publish the current disclosure of a period as a new, immutable release (the next version)."""
    content = jsonable(_content(request, store, body.period, body.start))
    row = save_release(
        store,
        period=content["period"],
        start=content["start"],
        min_users=content["min_users"],
        version=content["data_version"],
        content=content,
        actor=user,
        note=body.note,
    )
    return jsonable({k: v for k, v in row.items() if k != "content"})


@router.get(f"{V1}/public/releases")
def public_releases(store: StoreDep) -> dict:
    return {"items": jsonable(list_releases(store))}


@router.get(f"{V1}/public/releases/{{release_id}}")
def public_release(release_id: int, store: StoreDep, download: bool = False):
    """One release: its metadata and content (``download=true``: as a JSON file attachment)."""
    row = get_release(store, release_id)
    if row is None:
        raise HTTPException(404, f"no release {release_id}")
    body = jsonable(row)
    if not download:
        return body
    return Response(
        json.dumps(body, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="carbonflow-release-{release_id}.json"'},
    )
