"""Carbon reports (daily, monthly, annual; per region, industry, plant and user) and their storage.

``build.build_report`` gathers the numbers (energy-weighted, from ``center/store``), ``render.render``
writes CSV / XLSX / PDF, ``service.make_report`` does both and records the report with its data
version; ``disclosure`` computes the public aggregates and releases.  See docs/reports.md.
"""
