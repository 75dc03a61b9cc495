"""Who may do what, where: one table for every operation of the center's API (roles × region scope).

Every route is looked up here by ``(method, path template)`` by the app-wide dependency
:func:`carbonflow.center.api.deps.authorize`; a route missing from :data:`POLICY` is refused (403) —
deny unless listed — and ``create_app`` refuses to start when its OpenAPI document names an operation
the table does not (so a new router cannot slip in unguarded).

An entry is ``Rule(permission, scope)``:

* ``permission`` — the ability the operation needs; :data:`ROLE_PERMISSIONS` says which roles hold it
  (``public``: no login; ``collector``: no user, the route checks the collector's signature itself;
  ``login``: any logged-in user).
* ``scope`` — where the operation's region comes from, checked against the user's region prefix:
  ``none`` (nothing regional: login, own profile); ``center`` (the whole center's data — allowed when the
  user's prefix covers the center's region, ``settings.center_region``); ``region`` (the ``region``
  query parameter — defaulted to the user's prefix, refused outside it); ``rows`` (a list of field
  equipment or operations: any user with the permission may call it, and sees only the rows of their
  region — the route filters in SQL by :class:`carbonflow.center.store.row_scope.RowScope`, rows
  without a region only for a user whose prefix covers the center's region); ``device``, ``collector``,
  ``bus``, ``camera``, ``image``, ``alarm`` (the region of the path's resource; an unknown resource is
  refused like an out-of-scope one for a scoped user, so ids cannot be probed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from carbonflow.center.store.row_scope import within
from carbonflow.center.store.users import ROLES

Permission = Literal["public", "collector", "login", "read", "report", "operate", "audit", "admin"]
Scope = Literal["none", "center", "region", "rows", "device", "collector", "bus", "camera", "image", "alarm"]

__all__ = ["POLICY", "ROLES", "ROLE_PERMISSIONS", "Rule", "role_may", "rule_for", "within"]

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"login", "read", "report", "operate", "audit", "admin"}),
    "operator": frozenset({"login", "read", "operate"}),  # commands, configuration, acknowledgements
    "analyst": frozenset({"login", "read", "report"}),
    "auditor": frozenset({"login", "read", "audit"}),
    "viewer": frozenset({"login", "read"}),
}


@dataclass(frozen=True)
class Rule:
    permission: Permission
    scope: Scope = "none"


PUBLIC = Rule("public")
COLLECTOR = Rule("collector")
V1 = "/api/v1"

POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/"): PUBLIC,  # the web UI's page; its data comes from the guarded API
    # collectors (HMAC signature under the collector's own secret, checked by the route)
    ("POST", f"{V1}/ingest"): COLLECTOR,
    ("POST", f"{V1}/images"): COLLECTOR,
    ("POST", f"{V1}/collectors/{{collector_id}}/status"): COLLECTOR,
    ("GET", f"{V1}/collectors/{{collector_id}}/commands"): COLLECTOR,
    ("POST", f"{V1}/collectors/{{collector_id}}/command-results"): COLLECTOR,
    # peer centers (C5: an Ed25519-signed envelope from a configured peer, checked by the route)
    ("POST", f"{V1}/cascade/messages"): COLLECTOR,
    ("GET", f"{V1}/cascade"): Rule("read", "center"),
    ("GET", f"{V1}/cascade/verifications"): Rule("read", "center"),
    # neighbouring regions' centers (an Ed25519-signed tie-intensities document, checked by the route)
    ("POST", f"{V1}/ties/intensities"): COLLECTOR,
    ("GET", f"{V1}/ties"): Rule("read", "center"),
    ("GET", f"{V1}/ties/intensities"): Rule("read", "center"),
    ("GET", f"{V1}/collectors/{{collector_id}}/config/{{version}}"): COLLECTOR,
    # sessions
    ("POST", f"{V1}/login"): PUBLIC,
    ("POST", f"{V1}/logout"): Rule("login"),
    ("GET", f"{V1}/me"): Rule("login"),
    # users and audit
    ("GET", f"{V1}/users"): Rule("admin"),
    ("POST", f"{V1}/users"): Rule("admin"),
    ("PATCH", f"{V1}/users/{{name}}"): Rule("admin"),
    ("GET", f"{V1}/audit"): Rule("audit"),
    # topology
    ("GET", f"{V1}/topology"): Rule("read", "center"),
    ("GET", f"{V1}/buses"): Rule("read", "region"),
    ("GET", f"{V1}/buses/{{bus_id}}"): Rule("read", "bus"),
    ("GET", f"{V1}/branches"): Rule("read", "region"),
    ("GET", f"{V1}/generators"): Rule("read", "region"),
    ("GET", f"{V1}/loads"): Rule("read", "region"),
    # results, history, the three sides (whole-center aggregates unless a region filter exists)
    ("GET", f"{V1}/intervals"): Rule("read", "center"),
    ("GET", f"{V1}/results"): Rule("read", "center"),
    ("GET", f"{V1}/results/{{kind}}"): Rule("read", "region"),
    ("GET", f"{V1}/series"): Rule("read", "center"),
    ("GET", f"{V1}/origin"): Rule("read", "center"),
    # versions of the results (recomputation of history, docs/recompute.md); a correction is recorded
    # by an operator or admin, applied by `carbonflow center recompute`
    ("GET", f"{V1}/versions"): Rule("read", "center"),
    ("GET", f"{V1}/versions/diff"): Rule("read", "center"),
    ("GET", f"{V1}/corrections"): Rule("read", "center"),
    ("POST", f"{V1}/corrections"): Rule("operate", "center"),
    ("GET", f"{V1}/history"): Rule("read", "region"),
    ("GET", f"{V1}/analysis"): Rule("read", "region"),
    ("GET", f"{V1}/overview"): Rule("read", "center"),
    ("GET", f"{V1}/generation"): Rule("read", "center"),
    ("GET", f"{V1}/grid"): Rule("read", "center"),
    ("GET", f"{V1}/consumption"): Rule("read", "center"),
    ("WEBSOCKET", f"{V1}/live"): Rule("read", "center"),
    # devices, readings, commands
    ("GET", f"{V1}/devices"): Rule("read", "rows"),
    ("GET", f"{V1}/devices/{{device_id}}"): Rule("read", "device"),
    ("GET", f"{V1}/devices/{{device_id}}/clock-offsets"): Rule("read", "device"),
    ("POST", f"{V1}/devices/{{device_id}}/commands"): Rule("operate", "device"),
    ("GET", f"{V1}/commands"): Rule("read", "rows"),
    ("GET", f"{V1}/commands/summary"): Rule("read", "rows"),
    ("GET", f"{V1}/points"): Rule("read", "rows"),
    ("GET", f"{V1}/readings"): Rule("read", "rows"),
    # remote maintenance of collectors
    ("GET", f"{V1}/collectors"): Rule("read", "rows"),
    ("GET", f"{V1}/collectors/{{collector_id}}"): Rule("read", "collector"),
    ("POST", f"{V1}/collectors/{{collector_id}}/config"): Rule("operate", "collector"),
    ("POST", f"{V1}/collectors/{{collector_id}}/secret/rotate"): Rule("admin"),
    ("GET", f"{V1}/collectors/{{collector_id}}/configs/{{version}}"): Rule("read", "collector"),
    ("POST", f"{V1}/collectors/{{collector_id}}/config/{{version}}/rollback"): Rule("operate", "collector"),
    ("POST", f"{V1}/commands/time-sync-all"): Rule("operate", "rows"),  # the clocks of the region
    # alarms (docs/alarms.md): a scoped user sees the alarms of their region; acknowledging, clearing
    # and the rule set are operators' work
    ("GET", f"{V1}/alarms"): Rule("read", "region"),
    ("GET", f"{V1}/alarms/{{alarm_id}}"): Rule("read", "alarm"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/ack"): Rule("operate", "alarm"),
    ("POST", f"{V1}/alarms/{{alarm_id}}/clear"): Rule("operate", "alarm"),
    ("GET", f"{V1}/alarm-rules"): Rule("read", "center"),
    ("PUT", f"{V1}/alarm-rules"): Rule("operate", "center"),
    ("GET", f"{V1}/alarm-notifications"): Rule("read", "center"),
    ("GET", f"{V1}/meter-checks"): Rule("read", "rows"),
    ("GET", f"{V1}/meter-checks/summary"): Rule("read", "rows"),
    # site cameras
    ("GET", f"{V1}/cameras"): Rule("read", "rows"),
    ("GET", f"{V1}/cameras/{{camera_id}}/latest"): Rule("read", "camera"),
    ("GET", f"{V1}/cameras/{{camera_id}}/images"): Rule("read", "camera"),
    ("GET", f"{V1}/images/{{key}}"): Rule("read", "image"),
    # carbon reports (the region query parameter: the report's region, defaulted to the user's)
    ("POST", f"{V1}/reports"): Rule("report", "region"),
    ("GET", f"{V1}/reports"): Rule("report", "region"),
    ("GET", f"{V1}/reports/{{report_id}}"): Rule("report", "region"),
    # carbon data out to enterprise carbon accounting and quota work (docs/interop.md)
    ("GET", f"{V1}/exports/enterprise"): Rule("report", "region"),
    ("GET", f"{V1}/exports/quota"): Rule("report", "region"),
    ("POST", f"{V1}/exports/table"): Rule("read"),  # the page's own rows back as XLSX: no stored data
    # public disclosure: no login; a release is published by an analyst or admin of the whole center
    ("GET", "/public"): PUBLIC,
    ("GET", f"{V1}/public/regions"): PUBLIC,
    ("GET", f"{V1}/public/industries"): PUBLIC,
    ("GET", f"{V1}/public/key-users"): PUBLIC,
    ("GET", f"{V1}/public/releases"): PUBLIC,
    ("GET", f"{V1}/public/releases/{{release_id}}"): PUBLIC,
    ("POST", f"{V1}/releases"): Rule("report", "center"),
}

# FastAPI's own documentation pages: public (they describe, they hold no data)
DOCUMENTATION_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of an operation (``HEAD`` is answered like ``GET``); None: not listed, so denied."""
    method = "GET" if method == "HEAD" else method
    return POLICY.get((method, path))


def role_may(role: str, permission: str) -> bool:
    if permission in ("public", "collector"):
        return True
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def unlisted_operations(openapi: dict) -> list[str]:
    """``METHOD path`` of every operation in an OpenAPI document that :data:`POLICY` does not list."""
    missing = []
    for path, operations in openapi.get("paths", {}).items():
        for method in operations:
            if (
                method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")
                and rule_for(method.upper(), path) is None
            ):
                missing.append(f"{method.upper()} {path}")
    return missing
