"""Emission intensities supplied beside a grid model (grid files carry no carbon data).

Shared by the MATPOWER and pandapower importers so that both reject the same mistakes the same way:
a key naming no element of the grid (usually a typo such as ``"gen:O"``) is an error, not a silent
default, because a wrong intensity would go unnoticed through every later report.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from carbonflow.sim.errors import GridImportError


def _checked(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GridImportError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise GridImportError(f"{where} must be a finite non-negative number, got {value!r}")
    return number


class IntensityTable:
    """Looks up gCO2/kWh per element id, with an optional default for generators."""

    def __init__(
        self,
        intensities: Mapping[Any, Any] | None,
        default_intensity: float | None,
        known_ids: Collection[str],
    ) -> None:
        self.values: dict[str, float] = {}
        for key, value in (intensities or {}).items():
            element_id = str(key)
            if element_id not in known_ids:
                raise GridImportError(f'intensities: no element "{element_id}" in the grid')
            self.values[element_id] = _checked(value, f'intensities: "{element_id}"')
        self.default = None if default_intensity is None else _checked(default_intensity, "default intensity")

    def generator(self, element_id: str) -> float:
        """A generator's intensity; every generator needs one (its own or the default)."""
        if element_id in self.values:
            return self.values[element_id]
        if self.default is None:
            raise GridImportError(
                f'generator "{element_id}" has no intensity (give one per generator or a default intensity)'
            )
        return self.default

    def optional(self, element_id: str) -> dict[str, float]:
        """The intensity field of a load or storage record, present only when the user gave one."""
        if element_id in self.values:
            return {"intensity_g_per_kwh": self.values[element_id]}
        return {}
