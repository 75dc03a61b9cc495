"""The truth of every interval, and the seam through which simulated devices read it.

:class:`IntervalTruth` is one interval's AC solution (as a C1 snapshot), the engine's result on it and
running counters (energy, carbon), all addressable the way DESIGN §4a addresses a point:
``truth.value(element_kind, element_id, quantity, end)``, e.g.
``("generator", "G3-1", "p_mw")``, ``("branch", "L012", "q_mvar", "from")``, ``("bus", "S041", "u_kv")``,
``("load", "U07", "import_energy_kwh")``.

Quantities (``end`` is ``"-"`` except for branch ends ``"from"``/``"to"``):

* bus: ``vm_pu``, ``va_degree``, ``u_kv``, ``intensity_g_per_kwh``, ``flux_mw``, ``load_mw``;
* generator: ``p_mw``, ``q_mvar``, ``intensity_g_per_kwh`` (its own factor), ``carbon_t_per_h``,
  counters ``export_energy_kwh`` (on-grid energy), ``carbon_kg``;
* load: ``p_mw``, ``q_mvar``, ``intensity_g_per_kwh`` (of its bus: what an electric-carbon meter shows),
  ``carbon_t_per_h``, counters ``import_energy_kwh``, ``export_energy_kwh``, ``carbon_kg``;
* storage: ``p_mw`` (charging positive), ``soc_mwh``, ``stored_carbon_t``, ``intensity_g_per_kwh``
  (of discharged power), counters ``charge_energy_kwh``, ``discharge_energy_kwh``;
* branch at an end: ``p_mw``, ``q_mvar`` (into the branch at that end), counters ``import_energy_kwh``
  (delivered from the branch into that end's bus) and ``export_energy_kwh`` (sent from the bus into the
  branch); branch without end: ``loss_mw``, ``density_g_per_kwh``, ``carbon_send_t_per_h``,
  ``loss_carbon_t_per_h``.

Counters start at zero at the start of the run and hold their value at the interval end.
Devices bind quantities of their own (``p_kw``, ``u_v``, ...) to points through :class:`ElementSource`,
which has the ``read(quantity, t)`` call of ``carbonflow.devices.base.ValueSource``.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from carbonflow.engine.cef import CefResult
from carbonflow.engine.document import result_document
from carbonflow.sim.errors import SimulationError

KINDS = ("bus", "generator", "load", "storage", "branch")
ENDS = ("-", "from", "to")


@dataclass(frozen=True, eq=False)
class TruthIndex:
    """Ids of one network and their positions; shared by every interval of a run."""

    bus_ids: tuple[str, ...]
    bus_vn_kv: np.ndarray
    gen_ids: tuple[str, ...]
    load_ids: tuple[str, ...]
    storage_ids: tuple[str, ...]
    branch_ids: tuple[str, ...]
    branch_from: tuple[str, ...]
    branch_to: tuple[str, ...]

    def __post_init__(self) -> None:
        positions = {}
        for kind, ids in zip(
            KINDS, (self.bus_ids, self.gen_ids, self.load_ids, self.storage_ids, self.branch_ids), strict=True
        ):
            positions[kind] = {element_id: k for k, element_id in enumerate(ids)}
        object.__setattr__(self, "positions", positions)

    def position(self, element_kind: str, element_id: str) -> int:
        try:
            return self.positions[element_kind][element_id]  # type: ignore[attr-defined]
        except KeyError:
            if element_kind not in KINDS:
                raise KeyError(f"unknown element kind {element_kind!r} (one of {', '.join(KINDS)})") from None
            raise KeyError(f'no {element_kind} "{element_id}" in the grid') from None


@dataclass(frozen=True, eq=False)
class TruthChunk:
    """Consecutive intervals: every value as a ``(T, n)`` array in :class:`TruthIndex` order.

    ``values[kind][quantity]`` (branch end quantities are keyed ``"p_mw@from"``); ``results`` gives the
    engine result of interval ``t`` (``results(t)``), ``snapshot(t)`` its C1 document.
    """

    index: TruthIndex
    first: int  # number of the first interval in the run
    ends: tuple[datetime, ...]
    interval_s: float
    values: dict[str, dict[str, np.ndarray]]
    batch: Any  # carbonflow.engine.batch.BatchResult
    iterations: np.ndarray

    def __len__(self) -> int:
        return len(self.ends)

    def interval(self, t: int) -> IntervalTruth:
        return IntervalTruth(self, t)

    def __iter__(self):
        return (IntervalTruth(self, t) for t in range(len(self)))


class IntervalTruth:
    """One interval of the truth; cheap to create (views into its chunk)."""

    __slots__ = ("chunk", "t")

    def __init__(self, chunk: TruthChunk, t: int) -> None:
        self.chunk, self.t = chunk, t

    @property
    def ts(self) -> datetime:
        """End of the interval (UTC)."""
        return self.chunk.ends[self.t]

    @property
    def interval_s(self) -> float:
        return self.chunk.interval_s

    @property
    def number(self) -> int:
        return self.chunk.first + self.t

    def value(self, element_kind: str, element_id: str, quantity: str, end: str = "-") -> float:
        """One value of one element (see the module docstring for the quantities)."""
        position = self.chunk.index.position(element_kind, element_id)
        key = quantity if end in ("-", "", None) else f"{quantity}@{end}"
        table = self.chunk.values[element_kind]
        if key not in table:
            known = sorted({name.split("@")[0] for name in table if "#" not in name})
            raise KeyError(
                f"{element_kind} has no quantity {quantity!r} at end {end!r} (known: {', '.join(known)})"
            )
        return float(table[key][self.t, position])

    def result(self) -> CefResult:
        return self.chunk.batch.at(self.t)

    def snapshot_document(self) -> dict[str, Any]:
        """The C1 input snapshot of this interval (the AC solution; ``carbonflow cef`` accepts it)."""
        index, values, t = self.chunk.index, self.chunk.values, self.t
        arrays = self.chunk.batch.series.arrays
        document: dict[str, Any] = {
            "buses": [{"id": bus_id} for bus_id in index.bus_ids],
            "generators": [
                {"id": gid, "bus": bus, "p_mw": float(p), "intensity_g_per_kwh": float(e)}
                for gid, bus, p, e in zip(
                    index.gen_ids,
                    self._buses("gen"),
                    arrays["gen_p_mw"][t],
                    arrays["gen_intensity_g_per_kwh"][t],
                    strict=True,
                )
            ],
            "loads": [
                {"id": lid, "bus": bus, "p_mw": float(p)}
                for lid, bus, p in zip(
                    index.load_ids, self._buses("load"), arrays["load_p_mw"][t], strict=True
                )
            ],
            "branches": [
                {"id": bid, "from_bus": f, "to_bus": to, "p_from_mw": float(pf), "p_to_mw": float(pt)}
                for bid, f, to, pf, pt in zip(
                    index.branch_ids,
                    index.branch_from,
                    index.branch_to,
                    values["branch"]["p_mw@from"][t],
                    values["branch"]["p_mw@to"][t],
                    strict=True,
                )
            ],
        }
        if index.storage_ids:
            records = []
            for sid, bus, p, e in zip(
                index.storage_ids,
                self._buses("storage"),
                arrays["storage_p_mw"][t],
                arrays["storage_intensity_g_per_kwh"][t],
                strict=True,
            ):
                record = {"id": sid, "bus": bus, "p_mw": float(p)}
                if math.isfinite(e):
                    record["intensity_g_per_kwh"] = float(e)
                records.append(record)
            document["storage"] = records
        return document

    def _buses(self, kind: str) -> list[str]:
        snap = self.chunk.batch.series.network
        positions = {"gen": snap.gen_bus, "load": snap.load_bus, "storage": snap.storage_bus}[kind]
        return [snap.bus_ids[k] for k in positions]

    def result_document(self) -> dict[str, Any]:
        """The engine's C1 output for this interval."""
        return result_document(self.result())

    def totals(self) -> dict[str, float]:
        totals = dict(self.result().totals)
        values = self.chunk.values
        t = self.t
        load = float(values["load"]["p_mw"][t].sum())
        generation = float(values["generator"]["p_mw"][t].sum())
        storage = float(values["storage"]["p_mw"][t].sum()) if "p_mw" in values["storage"] else 0.0
        totals.update(
            generation_mw=generation,
            load_mw=load,
            storage_charge_mw=storage,
            loss_mw=float(values["branch"]["loss_mw"][t].sum()),
        )
        return totals


class TruthFeed:
    """The latest intervals of a running simulation, looked up by time; safe to share between threads.

    The simulator :meth:`publish`es each interval as it is computed; devices read through
    :class:`ElementSource`.  ``keep`` intervals are retained (older ones are dropped).
    """

    def __init__(self, keep: int = 4096) -> None:
        self._lock = threading.Lock()
        self._ends: list[datetime] = []
        self._items: list[IntervalTruth] = []
        self.keep = keep

    def publish(self, truth: IntervalTruth) -> None:
        with self._lock:
            if self._ends and truth.ts <= self._ends[-1]:
                raise SimulationError(f"interval {truth.ts.isoformat()} is not after the last one published")
            self._ends.append(truth.ts)
            self._items.append(truth)
            if len(self._items) > self.keep:
                del self._ends[: -self.keep], self._items[: -self.keep]

    def at(self, t: datetime) -> IntervalTruth:
        """The interval whose span ``(ts - interval, ts]`` holds ``t``; the nearest one outside the run."""
        with self._lock:
            if not self._items:
                raise LookupError("no interval has been published yet")
            k = bisect.bisect_left(self._ends, t)
            return self._items[min(k, len(self._items) - 1)]

    def published(self) -> list[IntervalTruth]:
        """The intervals the feed still holds, oldest first."""
        with self._lock:
            return list(self._items)

    @property
    def latest(self) -> IntervalTruth:
        with self._lock:
            if not self._items:
                raise LookupError("no interval has been published yet")
            return self._items[-1]


@dataclass(frozen=True)
class PointRef:
    """A point's target (DESIGN §4a) and the factor from the truth's unit to the device's unit."""

    element_kind: str
    element_id: str
    quantity: str
    end: str = "-"
    scale: float = 1.0

    @classmethod
    def from_point(cls, point: Mapping[str, Any]) -> PointRef:
        """From a device-map point (``carbonflow.sim.device_map``)."""
        return cls(
            point["element_kind"],
            point["element_id"],
            point["quantity"],
            point.get("end", "-"),
            float(point.get("scale_to_device", 1.0)),
        )


class ElementSource:
    """A device's value source: device quantity name -> point of the truth.

    Conforms to ``carbonflow.devices.base.ValueSource`` (``read(quantity, t) -> float``), e.g.
    ``ElementSource(feed, {"p_kw": PointRef("load", "U07", "p_mw", scale=1000.0)})``.  Counters
    (``*_energy_kwh``, ``carbon_kg``) are interpolated linearly inside the interval so a register read
    between interval ends still advances smoothly.
    """

    def __init__(self, feed: TruthFeed, bindings: Mapping[str, PointRef]) -> None:
        self.feed = feed
        self.bindings = dict(bindings)

    def read(self, quantity: str, t: datetime) -> float:
        try:
            ref = self.bindings[quantity]
        except KeyError:
            raise KeyError(f"no binding for quantity {quantity!r}") from None
        truth = self.feed.at(t)
        value = truth.value(ref.element_kind, ref.element_id, ref.quantity, ref.end)
        if _is_counter(ref.quantity):
            start = truth.ts - timedelta(seconds=truth.interval_s)
            share = min(max((t - start).total_seconds() / truth.interval_s, 0.0), 1.0)
            rate = _counter_rate(truth, ref)
            value -= (1.0 - share) * rate
        return value * ref.scale


def _is_counter(quantity: str) -> bool:
    return quantity.endswith("_energy_kwh") or quantity == "carbon_kg"


def _counter_rate(truth: IntervalTruth, ref: PointRef) -> float:
    """The counter's increase over this interval."""
    key = ref.quantity if ref.end in ("-", "", None) else f"{ref.quantity}@{ref.end}"
    increments = truth.chunk.values[ref.element_kind][f"{key}#increase"]
    return float(increments[truth.t, truth.chunk.index.position(ref.element_kind, ref.element_id)])
