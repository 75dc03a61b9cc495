"""One flat table (columns + rows of dicts + a metadata dict) as CSV, XLSX, Parquet or JSON bytes —
the formats other systems load: CSV and XLSX for spreadsheets and accounting imports, Parquet (pyarrow)
for data frames.  Every format carries the metadata (data version, period): CSV as ``# key: value``
comment lines before the header, XLSX on a second sheet, Parquet in the schema's key-value metadata.
Numbers are written as the floats the sums gave (no rounding): an importer can reproduce totals.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

TABLE_FORMATS = ("json", "csv", "xlsx", "parquet")
TABLE_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass
class PeriodTable:
    """What every exported table of a period says about itself: the period, its bounds, the intervals
    and the data version (interval result hashes) it was made from."""

    period: str
    start: str
    first: datetime
    last: datetime
    time_zone: str
    data_version: str
    intervals: int

    def period_metadata(self, document: str, **extra: Any) -> dict[str, Any]:
        return {
            "document": document,
            "format_version": "1",
            "period": self.period,
            "start": self.start,
            "from_utc": self.first.isoformat(),
            "to_utc": self.last.isoformat(),
            "time_zone": self.time_zone,
            **extra,
            "intervals": self.intervals,
            "data_version": self.data_version,
        }


def _cell(value: Any) -> Any:
    return "" if value is None else value


def table_csv(columns: list[str], rows: list[dict[str, Any]], metadata: dict[str, Any]) -> bytes:
    out = io.StringIO()
    for key, value in metadata.items():
        out.write(f"# {key}: {value}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_cell(row.get(c)) for c in columns] for row in rows])
    return out.getvalue().encode("utf-8")


def table_xlsx(columns: list[str], rows: list[dict[str, Any]], metadata: dict[str, Any], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(columns)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([row.get(c) for c in columns])
    sheet.freeze_panes = "A2"
    about = book.create_sheet("about")
    for key, value in metadata.items():
        about.append([key, str(value)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# a number as the UI shows it: "-1234.5", "0.0031"; grouped digits, units or dates stay text
_SHOWN_NUMBER = re.compile(r"-?\d+(\.\d+)?")
EXCEL_DIGITS = 15  # an Excel number keeps 15 significant digits; a longer one would not show as it came


def shown_cell(text: str | None) -> tuple[Any, str | None]:
    """A cell of a table as the user saw it -> (value, number format): a number shown with at most 15
    significant digits becomes an Excel number formatted to the decimals shown (it displays exactly as
    the text), anything else stays the text."""
    if text is None:
        return "", None
    if not _SHOWN_NUMBER.fullmatch(text):
        return text, None
    number = Decimal(text)
    digits = number.as_tuple()
    if len(digits.digits) > EXCEL_DIGITS:
        return text, None
    decimals = max(0, -int(digits.exponent))
    return float(number), "0" + ("." + "0" * decimals if decimals else "")


def shown_table_xlsx(columns: list[str], rows: list[list[str | None]], title: str) -> bytes:
    """A table exactly as a page showed it (labels and cell texts in the user's language) as XLSX."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31] or "table")
    sheet.freeze_panes = "A2"
    sheet.append([_bold(sheet, label, Font) for label in columns])
    for row in rows:
        cells = []
        for text in row:
            value, number_format = shown_cell(text)
            if number_format is None:
                cells.append(value)
            else:
                cell = _write_only_cell(sheet, value)
                cell.number_format = number_format
                cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _write_only_cell(sheet: Any, value: Any) -> Any:
    from openpyxl.cell import WriteOnlyCell

    return WriteOnlyCell(sheet, value=value)


def _bold(sheet: Any, label: str, font: Any) -> Any:
    cell = _write_only_cell(sheet, label)
    cell.font = font(bold=True)
    return cell


def table_parquet(columns: list[str], rows: list[dict[str, Any]], metadata: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    if not rows:
        table = pa.table({c: pa.array([], pa.string()) for c in columns})
    table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def write_table(
    format: str, columns: list[str], rows: list[dict[str, Any]], metadata: dict[str, Any], *, title: str
) -> bytes:
    if format == "csv":
        return table_csv(columns, rows, metadata)
    if format == "xlsx":
        return table_xlsx(columns, rows, metadata, title)
    if format == "parquet":
        return table_parquet(columns, rows, metadata)
    if format == "json":
        return json.dumps({**metadata, "items": rows}, ensure_ascii=False, default=str).encode("utf-8")
    raise ValueError(f"format must be one of {', '.join(TABLE_FORMATS)}, not {format!r}")
