"""One center's computation of an interval: solve its part, its region totals and ties, the hash of the
result, and the import intensities it hands down to the centers below it.

Everything here is a plain function of JSON-able data, so the upper center can run a lower center's
computation again on exactly what the lower one sent and compare (:mod:`verify`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carbonflow.center.cascade.split import (
    ELEMENT_LISTS,
    TIE_PREFIX,
    CascadeError,
    inside_bus,
    is_import,
    outside_bus,
    part_snapshot,
)
from carbonflow.engine import SnapshotError, snapshot_from_dict, solve
from carbonflow.engine.document import result_document
from carbonflow.messages.c5 import MeterSum, RegionTotals, TieFlow

HASH_DIGITS = 9  # values rounded to this many decimals before hashing (same code, same data, same hash)


@dataclass(frozen=True)
class PartResult:
    region: str
    losses: str
    interval_s: int
    document: dict[str, Any]  # the engine's result, tie sources / sinks left out
    intensities: dict[str, float | None]  # bus -> g/kWh
    totals: RegionTotals
    ties: list[TieFlow]
    meter_sums: list[MeterSum]
    imports: dict[str, float | None]  # tie -> the import intensity used
    recv_intensity: dict[str, float | None]  # every branch -> intensity of the power it delivers

    @functools.cached_property
    def result_hash(self) -> str:  # computed once (the document is not changed after the solve)
        return result_hash(self.document)


def _round(value: Any) -> Any:
    kind = type(value)  # exact types first: the document is plain JSON data (faster than isinstance)
    if kind is float:
        return round(value, HASH_DIGITS)
    if kind is dict:
        return _round_dict(value)
    if kind is list:
        return [_round_dict(v) if type(v) is dict else _round(v) for v in value]
    if kind is str or kind is int or value is None:
        return value
    if isinstance(value, float):
        return round(value, HASH_DIGITS)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _round_dict(value: dict) -> dict:
    """:func:`_round` of a dict, its leaves rounded inline: a document is lists of flat records, and a
    call per leaf was most of the hash's cost (~10 % of a center's CPU per interval, issue 16)."""
    out = {}
    for k, v in value.items():
        kind = type(v)
        if kind is float:
            out[k] = round(v, HASH_DIGITS)
        elif kind is str or kind is int or v is None:
            out[k] = v
        else:
            out[k] = _round(v)
    return out


def result_hash(document: Mapping[str, Any]) -> str:
    text = json.dumps(_round(dict(document)), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def delivered_intensity(branch: Mapping[str, Any], intensity: Mapping[str, float | None], losses: str):
    """Intensity of the power a branch delivers at its receiving end: the sending bus's under
    ``receiving``; under ``consumer`` the branch's loss carbon rides on (sent carbon / delivered power)."""
    sending = branch.get("sending_bus")
    if sending is None:
        return None
    e_send = intensity.get(sending)
    if e_send is None or losses == "receiving" or float(branch["p_recv_mw"]) <= 0:
        return e_send
    return e_send * float(branch["p_send_mw"]) / float(branch["p_recv_mw"])


def balance_uncertainty_kwh(part: Mapping[str, Any], hours: float) -> float | None:
    """1σ of a part's energy balance: every metered power in it (element, branch end, tie) enters the
    balance once, their errors independent; None when the part carries no uncertainty (exact data)."""
    u_mw = [e.get("u_p_mw") for name in ELEMENT_LISTS for e in part.get(name, [])]
    u_mw += [b.get(f"u_p_{end}_mw") for b in part.get("branches", []) for end in ("from", "to")]
    u_mw += [t.get("u_p_mw") for t in part.get("ties", [])]
    known = [float(u) for u in u_mw if u is not None]
    return math.sqrt(sum(u * u for u in known)) * hours * 1000 if known else None


def solve_part(
    part: Mapping[str, Any], imports: Mapping[str, float | None], losses: str, interval_s: int
) -> PartResult:
    """Solve a part with its imports at the given intensities; a bad part -> :class:`CascadeError`."""
    try:
        snapshot = part_snapshot(part, imports)
        result = solve(snapshot_from_dict(snapshot), losses)
    except SnapshotError as error:
        raise CascadeError(f"region {part.get('region')}: {error}") from None
    full = result_document(result)
    hours = interval_s / 3600.0
    intensity = {b["id"]: b["intensity_g_per_kwh"] for b in full["buses"]}
    pseudo_gen = [g for g in full["generators"] if g["id"].startswith(TIE_PREFIX)]
    pseudo_load = [x for x in full["loads"] if x["id"].startswith(TIE_PREFIX)]
    totals = full["totals"]
    document = {
        "region": part.get("region"),
        "losses": losses,
        "buses": full["buses"],
        "branches": full["branches"],
        "generators": [g for g in full["generators"] if not g["id"].startswith(TIE_PREFIX)],
        "loads": [x for x in full["loads"] if not x["id"].startswith(TIE_PREFIX)],
        **({"storage": full["storage"]} if "storage" in full else {}),
    }
    region_totals = RegionTotals(
        region=str(part.get("region")),
        generation_carbon_t=(
            totals["generation_carbon_t_per_h"] - sum(g["carbon_t_per_h"] for g in pseudo_gen)
        )
        * hours,
        load_carbon_t=(totals["load_carbon_t_per_h"] - sum(x["carbon_t_per_h"] for x in pseudo_load)) * hours,
        loss_carbon_t=totals["loss_carbon_t_per_h"] * hours,
        generation_energy_kwh=(totals["generation_mw"] - sum(g["p_mw"] for g in pseudo_gen)) * hours * 1000,
        load_energy_kwh=(totals["load_mw"] - sum(x["p_mw"] for x in pseudo_load)) * hours * 1000,
        loss_energy_kwh=totals["loss_mw"] * hours * 1000,
        import_energy_kwh=sum(g["p_mw"] for g in pseudo_gen) * hours * 1000,
        export_energy_kwh=sum(x["p_mw"] for x in pseudo_load) * hours * 1000,
        u_balance_kwh=balance_uncertainty_kwh(part, hours),
    )
    document["totals"] = region_totals.model_dump(mode="json")
    used = {str(t["id"]): imports.get(str(t["id"])) for t in part.get("ties", []) if is_import(t)}
    ties = [
        TieFlow(
            branch_id=str(t["id"]),
            lower_bus=inside_bus(t),
            upper_bus=outside_bus(t),
            p_into_lower_mw=-float(t["p_mw"]),
            energy_into_lower_kwh=-float(t["p_mw"]) * hours * 1000,
            lower_intensity_g_per_kwh=intensity.get(inside_bus(t)),
            import_intensity_g_per_kwh=used.get(str(t["id"])),
        )
        for t in part.get("ties", [])
    ]
    recv = {b["id"]: delivered_intensity(b, intensity, losses) for b in full["branches"]}
    return PartResult(
        str(part.get("region")),
        losses,
        interval_s,
        document,
        intensity,
        region_totals,
        ties,
        meter_sums(part, hours),
        used,
        recv,
    )


def meter_sums(part: Mapping[str, Any], hours: float) -> list[MeterSum]:
    """Σ of the metered energy per element kind (generation, load, storage charge) of the part."""
    from decimal import Decimal

    sums = []
    for kind, name in (("generator", "generators"), ("load", "loads"), ("storage", "storage")):
        records = part.get(name, [])
        total = sum((Decimal(repr(float(r["p_mw"]))) for r in records), Decimal(0))
        energy = (total * Decimal(repr(hours)) * 1000).quantize(Decimal("0.001"))
        sums.append(MeterSum(element_kind=kind, quantity="energy_kwh", total=energy, points=len(records)))
    return sums


def child_imports(
    child_part: Mapping[str, Any],
    own: PartResult,
    upper_imports: Mapping[str, float | None],
) -> dict[str, float | None]:
    """The import intensity of every tie power comes into a child's part over: from this center's own
    solution where the far end is inside this region, else the one this center got from above."""
    found: dict[str, float | None] = {}
    for tie in child_part.get("ties", []):
        if not is_import(tie):
            continue
        tie_id = str(tie["id"])
        if tie_id in own.recv_intensity:
            found[tie_id] = own.recv_intensity[tie_id]
        elif tie_id in upper_imports:
            found[tie_id] = upper_imports[tie_id]
        else:
            raise CascadeError(f"tie {tie_id!r} of {child_part.get('region')!r}: no import intensity known")
    return found


def far_bus(part: dict[str, Any], tie_id: str) -> str:
    """The bus at the other end of a part's tie (outside the part)."""
    for tie in part.get("ties", []):
        if str(tie["id"]) == tie_id:
            return str(tie["to_bus"] if tie["end"] == "from" else tie["from_bus"])
    return ""
