"""Mutual verification of one interval, as plain functions returning C5 verdicts.

The upper center judges a lower center's :class:`~carbonflow.messages.c5.IntervalReport` against what it
knows itself: the part the lower sent (:class:`RegionData`), the import intensities it handed down and its
own solution of its whole region.  The lower center judges its own balance and what came down to it.
Every function returns verdicts whose ``expected`` is the judge's number and ``found`` the other side's,
so a mismatch shows both sides' values next to each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carbonflow.center.cascade.compute import PartResult, solve_part
from carbonflow.center.cascade.split import CascadeError
from carbonflow.messages.c5 import IntervalReport, RegionTotals, Verdict

TOTAL_FIELDS = (
    "generation_carbon_t",
    "load_carbon_t",
    "loss_carbon_t",
    "generation_energy_kwh",
    "load_energy_kwh",
    "loss_energy_kwh",
    "import_energy_kwh",
    "export_energy_kwh",
)


@dataclass(frozen=True)
class Tolerances:
    intensity_g_per_kwh: float = 1e-6  # hierarchical vs monolithic, import intensity used vs handed down
    energy_kwh: float = 0.5  # region balance, absolute ...
    energy_share: float = 1e-6  # ... plus this share of the region's generation + imports
    carbon_t: float = 1e-4
    tie_abs_mw: float = 0.05  # a tie's two ends: loss may be this far below zero ...
    tie_max_loss_share: float = 0.03  # ... and at most this share of the sent power (plus tie_abs_mw)
    # ... both widened by this many combined standard uncertainties of the two metered ends: each end is
    # the mean of its own RTU's samples, taken at other moments of a changing flow
    tie_coverage_factor: float = 2.0
    totals_share: float = 1e-9  # totals recomputed vs reported


def _verdict(check: str, ok: bool, **fields: Any) -> Verdict:
    return Verdict(check=check, status="ok" if ok else "mismatch", **fields)


def balance(report: IntervalReport, tol: Tolerances = Tolerances()) -> list[Verdict]:
    """The region's energy and carbon close: generation + imports = load + loss + exports."""
    t: RegionTotals = report.totals
    scale = t.generation_energy_kwh + t.import_energy_kwh
    energy_in = t.generation_energy_kwh + t.import_energy_kwh
    energy_out = t.load_energy_kwh + t.loss_energy_kwh + t.export_energy_kwh
    # metered data closes only within its uncertainty: widened like a tie's ends (tie_coverage_factor)
    metered_kwh = tol.tie_coverage_factor * (t.u_balance_kwh or 0.0)
    energy_tol = tol.energy_kwh + tol.energy_share * abs(scale) + metered_kwh
    import_carbon = (
        sum(
            x.energy_into_lower_kwh * (x.import_intensity_g_per_kwh or 0.0)
            for x in report.ties
            if x.energy_into_lower_kwh > 0
        )
        / 1e6
    )
    export_carbon = (
        sum(
            -x.energy_into_lower_kwh * (x.lower_intensity_g_per_kwh or 0.0)
            for x in report.ties
            if x.energy_into_lower_kwh < 0
        )
        / 1e6
    )
    carbon_in = t.generation_carbon_t + import_carbon
    carbon_out = t.load_carbon_t + t.loss_carbon_t + export_carbon
    carbon_in_intensity = carbon_in / energy_in if energy_in > 0 else 0.0  # t per kWh
    carbon_tol = tol.carbon_t + tol.energy_share * abs(carbon_in) + metered_kwh * carbon_in_intensity
    return [
        _verdict(
            "balance",
            abs(energy_in - energy_out) <= energy_tol,
            subject="energy_kwh",
            expected=energy_in,
            found=energy_out,
            tolerance=energy_tol,
            detail="generation + imports against load + loss + exports",
        ),
        _verdict(
            "balance",
            abs(carbon_in - carbon_out) <= carbon_tol,
            subject="carbon_t",
            expected=carbon_in,
            found=carbon_out,
            tolerance=carbon_tol,
            detail="generation + import carbon against load + loss + export carbon",
        ),
    ]


def tie_flows(report: IntervalReport, merged_part: Mapping[str, Any], tol: Tolerances = Tolerances()):
    """Each tie whose far end this center meters too: both ends agree, the difference being the loss
    (at least ``-tie_abs_mw``, at most ``tie_max_loss_share`` of the sent power), within the expanded
    uncertainty of the two metered ends where the parts carry it."""
    branches = {str(b["id"]): b for b in merged_part.get("branches", [])}
    verdicts = []
    for tie in report.ties:
        branch = branches.get(tie.branch_id)
        if branch is None:  # far end outside this region: judged further up
            continue
        lower_end = "from" if str(branch["from_bus"]) == tie.lower_bus else "to"
        far_p = float(branch["p_to_mw" if lower_end == "from" else "p_from_mw"])
        lower_p = -tie.p_into_lower_mw  # into the branch at the lower end
        loss = far_p + lower_p
        sent = max(far_p, lower_p)
        far_end = "to" if lower_end == "from" else "from"
        u = math.hypot(
            float(branch.get(f"u_p_{far_end}_mw") or 0.0), float(branch.get(f"u_p_{lower_end}_mw") or 0.0)
        )
        spread = tol.tie_coverage_factor * u
        high = tol.tie_max_loss_share * abs(sent) + tol.tie_abs_mw + spread
        verdicts.append(
            _verdict(
                "tie_flow",
                -tol.tie_abs_mw - spread <= loss <= high,
                subject=tie.branch_id,
                expected=far_p,
                found=tie.p_into_lower_mw,
                tolerance=high,
                detail=f"into the lower region, MW: sent at the far end {far_p:.6g}, "
                f"lower end {tie.p_into_lower_mw:.6g}, loss {loss:.6g}, ends' combined 1σ {u:.3g}",
            )
        )
    return verdicts


def tie_intensities(
    report: IntervalReport, handed_down: Mapping[str, float | None], tol: Tolerances = Tolerances()
) -> list[Verdict]:
    """The import intensity the lower used on each import tie equals the one handed down to it."""
    verdicts = []
    for tie in report.ties:
        if tie.p_into_lower_mw <= 0:
            continue
        expected = handed_down.get(tie.branch_id)
        found = tie.import_intensity_g_per_kwh
        ok = (expected is None and found in (None, 0.0)) or (
            expected is not None and found is not None and abs(found - expected) <= tol.intensity_g_per_kwh
        )
        verdicts.append(
            _verdict(
                "tie_intensity",
                ok,
                subject=tie.branch_id,
                expected=expected,
                found=found,
                tolerance=tol.intensity_g_per_kwh,
                detail="import intensity, g/kWh",
            )
        )
    return verdicts


def hierarchical(
    report: IntervalReport,
    lower_part: Mapping[str, Any],
    handed_down: Mapping[str, float | None],
    upper: PartResult,
    tol: Tolerances = Tolerances(),
    again: PartResult | None = None,
) -> list[Verdict]:
    """The lower's result equals the upper's: recomputed from what the lower sent (same hash, same
    totals) and, bus by bus at the ties, equal to the upper's solution of its whole region.  ``again``:
    that recomputation when the upper made it already (same part, same handed-down intensities)."""
    if again is None:
        try:
            again = solve_part(lower_part, handed_down, upper.losses, upper.interval_s)
        except CascadeError as error:
            return [_verdict("data", False, detail=str(error))]
    verdicts = [
        _verdict(
            "hierarchical",
            again.result_hash == report.result_hash,
            subject="result_hash",
            detail=f"recomputed {again.result_hash[:12]}, reported {report.result_hash[:12]}",
        )
    ]
    for name in TOTAL_FIELDS:
        expected, found = getattr(again.totals, name), getattr(report.totals, name)
        limit = tol.totals_share * max(abs(expected), 1.0)
        if abs(expected - found) > limit:
            verdicts.append(
                _verdict(
                    "hierarchical",
                    False,
                    subject=name,
                    expected=expected,
                    found=found,
                    tolerance=limit,
                    detail=f"region total {name}: recomputed from the lower's data vs reported",
                )
            )
    worst, where = 0.0, None
    for tie in report.ties:
        mine = upper.intensities.get(tie.lower_bus)
        theirs = tie.lower_intensity_g_per_kwh
        if mine is None or theirs is None:
            continue
        if abs(mine - theirs) >= worst:
            worst, where = abs(mine - theirs), (tie, mine, theirs)
    if where is not None:
        tie, mine, theirs = where
        verdicts.append(
            _verdict(
                "hierarchical",
                worst <= tol.intensity_g_per_kwh,
                subject=tie.lower_bus,
                expected=mine,
                found=theirs,
                tolerance=tol.intensity_g_per_kwh,
                detail="nodal intensity at the tie bus: upper's whole-region solution vs lower's, g/kWh",
            )
        )
    return verdicts


def judge_report(
    report: IntervalReport,
    lower_part: Mapping[str, Any],
    handed_down: Mapping[str, float | None],
    upper: PartResult,
    merged_part: Mapping[str, Any],
    tol: Tolerances = Tolerances(),
    again: PartResult | None = None,
) -> list[Verdict]:
    """Every check the upper runs on a lower's report of one interval."""
    return [
        *balance(report, tol),
        *tie_flows(report, merged_part, tol),
        *tie_intensities(report, handed_down, tol),
        *hierarchical(report, lower_part, handed_down, upper, tol, again),
    ]
