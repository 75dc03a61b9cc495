"""Render result documents as CSV (one table, a ``kind`` column per record) or terminal tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

_SECTIONS = (
    ("buses", "bus"),
    ("branches", "branch"),
    ("generators", "generator"),
    ("loads", "load"),
    ("storage", "storage"),
)


def _rows(document: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for section, kind in _SECTIONS:
        for record in document.get(section, []):
            yield kind, record
    yield "totals", {"id": "totals", **document["totals"]}
    for record in origin_rows(document):
        yield "origin", record


def origin_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The origin matrix flattened: one row per (load, source) that supplies it."""
    origin = document.get("origin")
    if not origin:
        return []
    rows = []
    for load in origin["loads"]:
        shares = load.get("carbon_share") or {}
        for source, power in load["power_mw"].items():
            rows.append(
                {
                    "id": load["id"],
                    "bus": load["bus"],
                    "source": source,
                    "power_mw": power,
                    "carbon_t_per_h": load["carbon_t_per_h"].get(source, 0.0),
                    "carbon_share": shares.get(source),
                }
            )
    return rows


def to_csv(document: dict[str, Any]) -> str:
    columns: list[str] = ["kind"]
    rows = list(_rows(document))
    for _kind, record in rows:
        columns.extend(name for name in record if name not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for kind, record in rows:
        writer.writerow({"kind": kind, **{k: ("" if v is None else v) for k, v in record.items()}})
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = 0.0 if abs(value) < 5e-7 else value  # round-off shows as 0, never "-0"
        return f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) < 1e12 else f"{value:.6g}"
    return str(value)


def _table(title: str, records: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    header = [label for _key, label in columns]
    body = [[_cell(record.get(key)) for key, _label in columns] for record in records]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(columns))]
    numeric = [all(_is_number(row[i]) for row in body) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(header), rule, *(line(row) for row in body)])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def to_table(document: dict[str, Any]) -> str:
    totals = document["totals"]
    parts = [
        _table(
            "Buses (节点碳势)",
            document["buses"],
            [
                ("id", "bus"),
                ("flux_mw", "flux MW"),
                ("intensity_g_per_kwh", "intensity gCO2/kWh"),
                ("load_mw", "load MW"),
                ("load_carbon_t_per_h", "load tCO2/h"),
            ],
        ),
        _table(
            "Branches (支路碳流)",
            document["branches"],
            [
                ("id", "branch"),
                ("from_bus", "from"),
                ("to_bus", "to"),
                ("sending_bus", "sends"),
                ("p_send_mw", "P send MW"),
                ("p_recv_mw", "P recv MW"),
                ("density_g_per_kwh", "density g/kWh"),
                ("carbon_send_t_per_h", "send tCO2/h"),
                ("loss_carbon_t_per_h", "loss tCO2/h"),
            ],
        ),
        _table(
            "Generators (机组注入碳流率)",
            document["generators"],
            [
                ("id", "generator"),
                ("bus", "bus"),
                ("p_mw", "P MW"),
                ("intensity_g_per_kwh", "gCO2/kWh"),
                ("carbon_t_per_h", "tCO2/h"),
            ],
        ),
        _table(
            "Loads (负荷碳流率)",
            document["loads"],
            [("id", "load"), ("bus", "bus"), ("p_mw", "P MW"), ("carbon_t_per_h", "tCO2/h")],
        ),
    ]
    if document.get("storage"):
        parts.append(
            _table(
                "Storage",
                document["storage"],
                [
                    ("id", "storage"),
                    ("bus", "bus"),
                    ("p_mw", "P MW (charging +)"),
                    ("charge_carbon_t_per_h", "charge tCO2/h"),
                    ("discharge_carbon_t_per_h", "discharge tCO2/h"),
                ],
            )
        )
    if document.get("origin"):
        parts.append(
            _table(
                "Origin of each load (电源来源)",
                origin_rows(document),
                [
                    ("id", "load"),
                    ("bus", "bus"),
                    ("source", "from source"),
                    ("power_mw", "P MW"),
                    ("carbon_t_per_h", "tCO2/h"),
                    ("carbon_share", "share of its carbon"),
                ],
            )
        )
    parts.append(
        f"Totals ({document['losses']} losses): "
        f"generation {_cell(totals['generation_carbon_t_per_h'])} tCO2/h"
        f" = load {_cell(totals['load_carbon_t_per_h'])} + loss {_cell(totals['loss_carbon_t_per_h'])}"
        f" + residual {_cell(totals['residual_t_per_h'])}"
    )
    return "\n\n".join(parts) + "\n"
