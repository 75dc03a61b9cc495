"""Monitoring management center (监测管理中心): storage, ingestion, metering, alarms, cascade, API.

``store`` keeps topology, devices, readings and interval results (SQLite or PostgreSQL); ``ingest``
receives collector batches over HTTP and MQTT (contract C4); ``api`` is the FastAPI application.
"""
