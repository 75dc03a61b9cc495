"""Draw the reference grid's topology from its data as an SVG (no dependency beyond carbonflow).

    .venv/bin/python docs/img/grid_topology.py            # writes docs/img/grid-topology.svg
"""

from __future__ import annotations

import sys
import warnings
from html import escape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
warnings.filterwarnings("ignore")

from carbonflow.sim.reference_grid import COUNTIES, reference_grid  # noqa: E402

SCALE, PAD = 5.0, 40.0
WIDTH, HEIGHT = 200 * SCALE + 2 * PAD + 230, 150 * SCALE + 2 * PAD
COLOURS = {500: "#b2182b", 220: "#ef8a62", 110: "#2166ac", 35: "#67a9cf", 10: "#4d9221"}


def xy(x: float, y: float) -> tuple[float, float]:
    return PAD + x * SCALE, HEIGHT - PAD - y * SCALE


def main(out: Path) -> None:
    net = reference_grid()
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{HEIGHT:.0f}" '
             'font-family="sans-serif" font-size="9">', '<rect width="100%" height="100%" fill="white"/>']
    for code, (city, _zh, en, (x0, x1), (y0, y1)) in COUNTIES.items():
        (ax, ay), (bx, by) = xy(x0, y1), xy(x1, y0)
        fill = "#f7f7f7" if city == "HF" else "#eef3f8"
        parts.append(f'<rect x="{ax}" y="{ay}" width="{bx - ax}" height="{by - ay}" fill="{fill}" stroke="#bbb"/>')
        parts.append(f'<text x="{ax + 4}" y="{ay + 12}" fill="#888">AH/{city}/{code} {en}</text>')
    pos = {i: xy(r.x_km, r.y_km) for i, r in net.bus.iterrows()}
    for table, a, b in (("line", "from_bus", "to_bus"), ("trafo", "hv_bus", "lv_bus")):
        for _, row in net[table].iterrows():
            (x1, y1), (x2, y2) = pos[row[a]], pos[row[b]]
            kv = int(net.bus.vn_kv[row[b]] if table == "line" else net.bus.vn_kv[row[a]])
            dash = ' stroke-dasharray="3,2"' if table == "trafo" else ""
            width = 2.2 if kv == 500 else 1.4 if kv == 220 else 1.0
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                         f'stroke="{COLOURS.get(kv, "#999")}" stroke-width="{width}"{dash}/>')
    for i, row in net.bus.iterrows():
        x, y = pos[i]
        colour = COLOURS.get(int(row.vn_kv), "#999")
        title = escape(f"{row['name']} {row.name_en} ({row.name_zh}) {row.vn_kv:g} kV {row.region}")
        if row.kind == "plant":
            shape = f'<rect x="{x - 6}" y="{y - 6}" width="12" height="12" fill="#222" stroke="{colour}" stroke-width="2">'
        elif row.kind == "user":
            shape = f'<polygon points="{x},{y - 7} {x - 6},{y + 5} {x + 6},{y + 5}" fill="#4d9221" stroke="#222">'
        else:
            shape = f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}" stroke="#222" stroke-width="0.5">'
        parts.append(f"{shape}<title>{title}</title></{shape.split()[0][1:]}>")
        if row.kind != "substation":
            parts.append(f'<text x="{x + 7}" y="{y - 5}" font-weight="bold">{escape(row["name"])}</text>')
    lx = PAD + 200 * SCALE + 20
    legend = [("■ plant (10)", "#222"), ("▲ user (14)", "#4d9221"), ("● substation (80)", "#555")]
    legend += [(f"— {kv} kV", c) for kv, c in COLOURS.items()] + [("- - transformer", "#555")]
    for k, (label, colour) in enumerate(legend):
        parts.append(f'<text x="{lx}" y="{PAD + 14 * k}" fill="{colour}" font-size="12">{escape(label)}</text>')
    parts.append(f'<text x="{lx}" y="{PAD + 14 * len(legend) + 10}" font-size="11">carbonflow reference grid,</text>')
    parts.append(f'<text x="{lx}" y="{PAD + 14 * len(legend) + 24}" font-size="11">104 nodes, layout in km</text>')
    parts.append("</svg>")
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("grid-topology.svg"))
