"""Metrology of the simulated meters: instrument transformers (倍率), accuracy classes, register
resolutions and the sign of power (docs/metering.md §units).

Every DL/T 645 / 698.45 meter of the device map sits on a 10 kV or higher bus, so behind a voltage
transformer (``vt_ratio`` = kV / 100 V) and a current transformer sized to its element (``ct_ratio`` =
the smallest standard primary current at or above the element's rated current, over 5 A).  It shows
secondary values: a 600 MW unit on a 500 kV bus (CT 1500/5, VT 500 kV/100 V, 倍率 1.5 million) shows
0.4 kW, well inside DL/T 645's XX.XXXX kW and DL/T 698.45's double-long 0.1 W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# the element quantity positive power flows into, by element kind (truth sign conventions)
POSITIVE_ENERGY = {
    "load": "import_energy_kwh",
    "generator": "export_energy_kwh",
    "storage": "charge_energy_kwh",
    "branch": "export_energy_kwh",  # a branch end's p_mw is positive from the bus into the branch
}
# instrument transformers: secondary ratings and the standard CT primary currents (A)
VT_SECONDARY_V, CT_SECONDARY_A = 100.0, 5.0
CT_PRIMARY_A = (5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 600, 750, 800, 1000, 1200,
                1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 15000, 20000)  # fmt: skip
SIZING_POWER_FACTOR = 0.9  # rated current = rated MW / (√3 · kV · 0.9)
LOAD_PEAK_MARGIN = 1.2  # a load's profile and noise stay below 1.2 x its peak p_mw
# the last digit of each register, in the device's unit
RESOLUTION = {
    ("dlt645", "energy"): "0.01",  # XXXXXX.XX kWh
    ("dlt645", "power"): "0.0001",  # XX.XXXX kW
    ("dlt698", "energy"): "0.0001",  # 0010/0020 attribute 4: long64-unsigned, scaler -4
    ("dlt698", "power"): "0.1",  # 2004: double-long W, scaler -1
    ("dlt698", "carbon"): "0.01",  # 2080/2090: kg, scaler -2
    ("dlt698", "factor"): "0.0001",  # 4120: kg/kWh, scaler -4
}
METER_CLASS, HV_METER_CLASS, RTU_CLASS = "0.5S", "0.2S", "0.5"


def power_sign(element_kind: str, forward: str | None, reverse: str | None) -> float:
    """+1 when the meter's forward register counts the element's positive power, else -1: a meter shows
    power positive in the direction of its forward (正向) register (a plant outlet meter counting
    on-grid energy on its reverse register shows export negative; so does a user's gateway meter whose
    forward register counts import into the user's bus)."""
    positive = POSITIVE_ENERGY[element_kind]
    if reverse == positive or (forward is not None and forward != positive):
        return -1.0
    return 1.0


def instrument_transformers(vn_kv: float, rated_mw: float) -> tuple[float, float]:
    """(ct_ratio, vt_ratio) of a metering point on a ``vn_kv`` bus for an element of ``rated_mw``: a
    VT of kV/100 V and the smallest standard CT primary at or above the rated current, over 5 A."""
    rated_a = abs(rated_mw) / (math.sqrt(3) * vn_kv * SIZING_POWER_FACTOR) * 1000.0
    primary = next((a for a in CT_PRIMARY_A if a >= rated_a), CT_PRIMARY_A[-1])
    return primary / CT_SECONDARY_A, vn_kv * 1000.0 / VT_SECONDARY_V


@dataclass(frozen=True)
class Metering:
    """Where a meter sits: its instrument transformers and accuracy class."""

    ct_ratio: float
    vt_ratio: float
    accuracy_class: str
    ct_class: str  # the instrument transformers' classes (GB/T 20840): their ratio errors add to the meter's
    vt_class: str

    @property
    def ratio(self) -> float:  # 倍率
        return self.ct_ratio * self.vt_ratio

    def device_fields(self) -> dict[str, Any]:
        return {
            "ct_ratio": self.ct_ratio,
            "vt_ratio": self.vt_ratio,
            "accuracy_class": self.accuracy_class,
            "ct_class": self.ct_class,
            "vt_class": self.vt_class,
        }


def metering_at(vn_kv: float, rating_mw: float, plant: bool = False) -> Metering:
    """Metering points of class I (plant outlets, 110 kV and above: 0.2S meter, 0.2S CT, 0.2 VT) and the
    others (0.5S meter, 0.5S CT, 0.5 VT), as DL/T 448 assigns them."""
    ct, vt = instrument_transformers(vn_kv, rating_mw)
    if plant or vn_kv >= 110:
        return Metering(ct, vt, HV_METER_CLASS, "0.2S", "0.2")
    return Metering(ct, vt, METER_CLASS, "0.5S", "0.5")


def rated_mw(row: Any, *columns: str) -> float:
    """The largest of the row's rating columns present (MW), at least 0.1 MW."""
    values = [
        abs(float(row[c])) for c in columns if c in row and row[c] is not None and math.isfinite(row[c])
    ]
    return max([*values, 0.1])


def branch_rated_mw(row: Any, vn_kv: float) -> float:
    """A branch's thermal rating as MW at ``vn_kv`` (a line's max current, a transformer's MVA)."""
    if "max_i_ka" in row and row["max_i_ka"] is not None and math.isfinite(row["max_i_ka"]):
        parallel = int(row.get("parallel", 1) or 1)
        return math.sqrt(3) * vn_kv * float(row["max_i_ka"]) * parallel * SIZING_POWER_FACTOR
    return float(row.get("sn_mva", 1.0) or 1.0) * SIZING_POWER_FACTOR
