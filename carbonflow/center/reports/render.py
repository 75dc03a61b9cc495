"""A :class:`CarbonReport` as CSV, XLSX (openpyxl, a bar chart per ranked table) or PDF (fpdf2).

All three carry the same numbers in the same order: the summary (period, scope, data version, totals),
then each section's tables.  An empty period gives a short file that says so.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from carbonflow.center.reports.build import CarbonReport, Table

FORMATS = ("csv", "xlsx", "pdf")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def render(report: CarbonReport, format: str) -> bytes:
    if format == "csv":
        return to_csv(report)
    if format == "xlsx":
        return to_xlsx(report)
    if format == "pdf":
        return to_pdf(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def to_csv(report: CarbonReport) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.title])
    for name, value in report.summary:
        writer.writerow([name, _cell(value)])
    if report.empty:
        writer.writerow([report.empty_note])
    for section in report.sections:
        for table in section.tables:
            writer.writerow([])
            writer.writerow([f"{section.title}: {table.title}"])
            if section.note:
                writer.writerow([section.note])
            writer.writerow(table.columns)
            writer.writerows([[_cell(v) for v in row] for row in table.rows])
    return out.getvalue().encode("utf-8")


def to_xlsx(report: CarbonReport) -> bytes:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "Summary"
    sheet.append([report.title])
    sheet["A1"].font = Font(bold=True, size=14)
    for name, value in report.summary:
        sheet.append([name, value])
    if report.empty:
        sheet.append([report.empty_note])
    sheet.column_dimensions["A"].width = 32
    sheet.column_dimensions["B"].width = 70
    for section in report.sections:
        ws = book.create_sheet(section.title[:31].replace(":", ""))
        ws.append([section.title])
        ws["A1"].font = Font(bold=True, size=13)
        if section.note:
            ws.append([section.note])
        chart_col = 10
        for table in section.tables:
            ws.append([])
            ws.append([table.title])
            ws.cell(ws.max_row, 1).font = Font(bold=True)
            ws.append(table.columns)
            header = ws.max_row
            for cell in ws[header]:
                cell.font = Font(bold=True)
            for row in table.rows:
                ws.append(row)
            if table.chart is not None and table.rows:
                label, value = table.chart
                rows = min(len(table.rows), 25)
                chart = BarChart()
                chart.title = f"{table.title}: {table.columns[value]}"
                chart.height, chart.width = 7.5, 16
                data = Reference(ws, min_col=value + 1, min_row=header, max_row=header + rows)
                chart.add_data(data, titles_from_data=True)
                chart.set_categories(
                    Reference(ws, min_col=label + 1, min_row=header + 1, max_row=header + rows)
                )
                ws.add_chart(chart, ws.cell(header, chart_col).coordinate)
        ws.column_dimensions["A"].width = 28
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _latin(text: Any) -> str:
    """PDF core fonts hold Latin-1 only: other characters become '?' (ids and numbers are ASCII)."""
    return str(_cell(text)).encode("latin-1", "replace").decode("latin-1")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return _latin(value)


def to_pdf(report: CarbonReport) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_latin(report.title))
    pdf.set_creator("carbonflow")
    pdf.add_page()
    pdf.set_font("helvetica", "B", 14)
    pdf.multi_cell(0, 8, _latin(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 9)
    for name, value in report.summary:
        pdf.cell(60, 5, _latin(name))
        pdf.cell(0, 5, _number(value), new_x="LMARGIN", new_y="NEXT")
    if report.empty:
        pdf.ln(4)
        pdf.set_font("helvetica", "B", 11)
        pdf.multi_cell(0, 6, _latin(report.empty_note), new_x="LMARGIN", new_y="NEXT")
    for section in report.sections:
        pdf.ln(4)
        pdf.set_font("helvetica", "B", 12)
        pdf.cell(0, 7, _latin(section.title), new_x="LMARGIN", new_y="NEXT")
        if section.note:
            pdf.set_font("helvetica", "I", 8)
            pdf.cell(0, 5, _latin(section.note), new_x="LMARGIN", new_y="NEXT")
        for table in section.tables:
            _pdf_table(pdf, table)
    return bytes(pdf.output())


def _pdf_table(pdf, table: Table) -> None:
    width = pdf.epw
    first = min(50.0, width * 0.34) if len(table.columns) <= 4 else width * 0.19
    other = (width - first) / max(1, len(table.columns) - 1)
    widths = [first] + [other] * (len(table.columns) - 1)
    pdf.ln(2)
    pdf.set_font("helvetica", "B", 9)
    pdf.cell(0, 6, _latin(table.title), new_x="LMARGIN", new_y="NEXT")
    if table.chart is not None and table.rows:
        _pdf_bars(pdf, table)
    pdf.set_font("helvetica", "B", 7)
    for name, w in zip(table.columns, widths):
        pdf.cell(w, 5, _latin(name), border=1)
    pdf.ln()
    pdf.set_font("helvetica", "", 7)
    for row in table.rows:
        for value, w in zip(row, widths):
            pdf.cell(w, 4.5, _number(value)[:40], border=1)
        pdf.ln()


def _pdf_bars(pdf, table: Table) -> None:
    """A horizontal bar chart of the table's chart column (largest first, at most 12 bars)."""
    label, value = table.chart
    rows = [r for r in table.rows if isinstance(r[value], int | float)][:12]
    top = max((abs(r[value]) for r in rows), default=0.0)
    if not rows or not top:
        return
    if pdf.will_page_break(5 * len(rows) + 4):
        pdf.add_page()
    pdf.set_font("helvetica", "", 7)
    x0, bar_max = pdf.l_margin + 45, pdf.epw - 70
    pdf.set_fill_color(46, 125, 50)
    for row in rows:
        y = pdf.get_y()
        pdf.set_xy(pdf.l_margin, y)
        pdf.cell(44, 4, _latin(row[label])[:30], align="R")
        pdf.rect(x0, y + 0.5, max(0.3, bar_max * abs(row[value]) / top), 3, style="F")
        pdf.set_xy(x0 + bar_max + 2, y)
        pdf.cell(20, 4, _number(row[value]))
        pdf.set_xy(pdf.l_margin, y + 4.5)
    pdf.ln(2)
