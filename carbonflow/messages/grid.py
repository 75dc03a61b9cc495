"""The grid document: a grid as carbonflow's own JSON (``carbonflow sim grid --export X.cf.json``).

Produced by :mod:`carbonflow.sim.device_map` from any grid the simulator holds (the reference grid or an
imported one); read by the center as its topology.  Optional fields are absent when the source grid has
no such column, and ``null`` when the column exists but the element has no value; both survive a
round trip through :meth:`GridDocument.document`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from carbonflow.messages.base import Contract, Document

SCHEMA_VERSION = 1


class GridBus(Contract):
    id: str = Field(min_length=1)
    vn_kv: float
    kind: Literal["plant", "substation", "user"]
    region: str | None = None  # province/city/county path, e.g. "AH/HF/FX"
    name_en: str | None = None
    name_zh: str | None = None
    industry: str | None = None
    x_km: float | None = None
    y_km: float | None = None


class GridGenerator(Contract):
    id: str = Field(min_length=1)
    table: Literal["ext_grid", "gen", "sgen"] | None = None  # the pandapower table it came from
    bus: str
    p_mw: float | None = None
    vm_pu: float | None = None
    slack: bool | None = None
    plant: str | None = None
    fuel: str | None = None
    technology: str | None = None
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    p_min_mw: float | None = None
    p_max_mw: float | None = None
    ramp_mw_per_min: float | None = None
    merit: int | float | None = None  # dispatch order (lower first)
    profile: str | None = None
    in_service: bool | None = None


class GridLoad(Contract):
    id: str = Field(min_length=1)
    bus: str
    p_mw: float | None = None
    q_mvar: float | None = None
    industry: str | None = None
    pf: float | None = None
    in_service: bool | None = None


class GridStorage(Contract):
    id: str = Field(min_length=1)
    bus: str
    p_max_mw: float | None = None
    max_e_mwh: float | None = None
    eta: float | None = None
    in_service: bool | None = None


class GridBranch(Contract):
    """A line or a (two-winding) transformer; ``from_bus`` is a transformer's high-voltage side."""

    id: str = Field(min_length=1)
    type: Literal["line", "transformer"] | None = None
    from_bus: str
    to_bus: str
    parallel: int | None = None
    in_service: bool | None = None
    # line
    length_km: float | None = None
    r_ohm_per_km: float | None = None
    x_ohm_per_km: float | None = None
    c_nf_per_km: float | None = None
    max_i_ka: float | None = None
    # transformer
    sn_mva: float | None = None
    vn_hv_kv: float | None = None
    vn_lv_kv: float | None = None
    vk_percent: float | None = None
    vkr_percent: float | None = None
    tap_pos: float | None = None


class GridRegion(Contract):
    path: str = Field(min_length=1)
    name_zh: str | None = None
    name_en: str | None = None
    level: str | None = None  # province | city | county


class GridPlant(Contract):
    id: str = Field(min_length=1)
    name_zh: str | None = None
    name_en: str | None = None
    technology: str | None = None
    fuel: str | None = None
    capacity_mw: float | None = None
    units: int | None = None
    region: str | None = None


class GridDocument(Document):
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TITLE: ClassVar[str] = "grid document"

    schema_version: int = SCHEMA_VERSION
    name: str = ""
    f_hz: float | None = None
    sn_mva: float | None = None
    buses: list[GridBus]
    generators: list[GridGenerator] = Field(default_factory=list)
    loads: list[GridLoad] = Field(default_factory=list)
    storage: list[GridStorage] = Field(default_factory=list)
    branches: list[GridBranch] = Field(default_factory=list)
    regions: list[GridRegion] = Field(default_factory=list)
    plants: list[GridPlant] = Field(default_factory=list)
