"""Center settings from the environment (every field, ``CARBONFLOW_<NAME>``), one-line errors, and the
seam between ``center/api`` (routes) and ``center/store`` (queries)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from carbonflow.center.api.settings import CenterSettings, SettingsError
from carbonflow.cli import main

API = Path(__file__).resolve().parents[1] / "carbonflow" / "center" / "api"
DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_field_is_read_from_its_carbonflow_variable():
    environ = {
        "CARBONFLOW_DATABASE_URL": "sqlite:///x.db",
        "CARBONFLOW_API_TOKENS": "t1:alice,t2",
        "CARBONFLOW_RETENTION_DAYS": "30",
        "CARBONFLOW_MQTT_URL": "mqtts://127.0.0.1:8883",
        "CARBONFLOW_MQTT_CLIENT_ID": "center-x",
        "CARBONFLOW_MQTT_TOPIC_PREFIX": "cf",
        "CARBONFLOW_MQTT_CA_FILE": "/etc/carbonflow/tls/ca.pem",
        "CARBONFLOW_MQTT_CERT_FILE": "/etc/carbonflow/tls/center.pem",
        "CARBONFLOW_MQTT_KEY_FILE": "/etc/carbonflow/tls/center.key",
        "CARBONFLOW_TLS_CERT_FILE": "/etc/carbonflow/tls/center.pem",
        "CARBONFLOW_TLS_KEY_FILE": "/etc/carbonflow/tls/center.key",
        "CARBONFLOW_TIME_ZONE": "UTC",
        "CARBONFLOW_SESSION_HOURS": "1.5",
        "CARBONFLOW_COOKIE_SECURE": "true",
        "CARBONFLOW_LIVE_POLL_S": "0.5",
        "CARBONFLOW_IMAGE_DIR": "/tmp/images",
        "CARBONFLOW_IMAGE_RETENTION_DAYS": "7",
        "CARBONFLOW_MAINTENANCE_PERIOD_S": "0",
        "CARBONFLOW_COMMAND_TIMEOUT_S": "60",
        "CARBONFLOW_COMMAND_MAX_ATTEMPTS": "5",
        "CARBONFLOW_COLLECTOR_OFFLINE_AFTER_S": "120",
        "CARBONFLOW_METER_CHECK_PERIOD_S": "0",
        "CARBONFLOW_METERING_INTERVAL_S": "900",
        "CARBONFLOW_METERING_LOSSES": "consumer",
        "CARBONFLOW_CASCADE_CONFIG": "/etc/carbonflow/cascade.toml",
        "CARBONFLOW_TIES_CONFIG": "/etc/carbonflow/ties.toml",
        "CARBONFLOW_CENTER_REGION": "AH",
        "CARBONFLOW_ALLOWED_ORIGINS": '["https://ops.example"]',
        "CARBONFLOW_LOGIN_MAX_FAILURES": "3",
        "CARBONFLOW_LOGIN_LOCKOUT_S": "60",
        "CARBONFLOW_MAX_BODY_BYTES": "1048576",
        "CARBONFLOW_MAX_JSON_DEPTH": "16",
        "CARBONFLOW_REPORT_DIR": "/var/lib/carbonflow/reports",
        "CARBONFLOW_REPORT_SCHEDULE": '["month:xlsx", "day:csv"]',
        "CARBONFLOW_DISCLOSURE_MIN_USERS": "5",
        "CARBONFLOW_DISCLOSURE_CONSENT": '["U01", "U07"]',
        "CARBONFLOW_ALARM_TICK_S": "0",
        "CARBONFLOW_ALARM_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "CARBONFLOW_ALARM_SMTP_HOST": "smtp.example",
        "CARBONFLOW_ALARM_SMTP_PORT": "587",
        "CARBONFLOW_ALARM_SMTP_STARTTLS": "true",
        "CARBONFLOW_ALARM_SMTP_USER": "ops",
        "CARBONFLOW_ALARM_SMTP_PASSWORD": "secret",
        "CARBONFLOW_ALARM_EMAIL_FROM": "center@example",
        "CARBONFLOW_ALARM_EMAIL_TO": "a@example,b@example",
        "CARBONFLOW_ALARM_NOTIFY_MAX_ATTEMPTS": "2",
        "CARBONFLOW_GREEN_CONTRACTS_FILE": "/etc/carbonflow/green.toml",
        "CARBONFLOW_AUDIT_CHECKPOINT_PERIOD_S": "600",
        "CARBONFLOW_AUDIT_KEY_FILE": "/etc/carbonflow/audit.key",
    }
    settings = CenterSettings.from_env(environ)
    defaults = CenterSettings.from_env({})
    assert set(CenterSettings.model_fields) == {name.removeprefix("CARBONFLOW_").lower() for name in environ}
    assert all(getattr(settings, name) != getattr(defaults, name) for name in CenterSettings.model_fields)
    assert settings.api_tokens == {"t1": "alice", "t2": "api"}
    assert settings.cookie_secure is True and settings.session_hours == 1.5


def test_every_variable_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in CenterSettings.model_fields if f"`CARBONFLOW_{name.upper()}`" not in text]
    assert missing == []


def test_code_values_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("CARBONFLOW_SESSION_HOURS", "2")
    monkeypatch.setenv("CARBONFLOW_API_TOKENS", "t:bob")
    assert CenterSettings().session_hours == 2.0
    assert CenterSettings().api_tokens == {"t": "bob"}
    assert CenterSettings(session_hours=3).session_hours == 3.0


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CARBONFLOW_RETENTION_DAYS", "0", "greater than or equal to 1"),
        ("CARBONFLOW_METERING_INTERVAL_S", "15 min", "valid integer"),
        ("CARBONFLOW_METERING_LOSSES", "sender", "pattern"),
        ("CARBONFLOW_COOKIE_SECURE", "perhaps", "valid boolean"),
        ("CARBONFLOW_TIME_ZONE", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, value, says):
    with pytest.raises(SettingsError) as caught:
        CenterSettings.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}: ") and says in message and "\n" not in message


def test_the_cli_reports_a_bad_setting_in_one_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("CARBONFLOW_RETENTION_DAYS", "many")
    assert main(["center", "serve", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("carbonflow center: error: CARBONFLOW_RETENTION_DAYS='many'") and "\n" not in err


ROUTE_DECORATORS = ("get", "post", "put", "patch", "delete", "websocket")


def _routes(tree: ast.AST):
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            func = decorator.func if isinstance(decorator, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr in ROUTE_DECORATORS:
                yield node, func.attr


# async routes besides the WebSocket, each with why: they read their body on the event loop and hand the
# store work to the threadpool themselves (checked below: they call run_in_threadpool)
ASYNC_ROUTES = {
    (
        "cascade.py",
        "message",
    ): "a peer's C5 message, ~40 per interval: one threadpool hop, not two (issue 16)",
}


def test_routes_ask_the_store_and_never_write_sql():
    """``center/api`` imports neither SQLAlchemy nor the store's schema; routes are plain ``def`` (FastAPI
    runs them in its threadpool) without inner functions, except the WebSocket, which is truly async, and
    the ``ASYNC_ROUTES``, which run their store work through ``run_in_threadpool``."""
    for path in API.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                assert not module.startswith("sqlalchemy"), f"{path.name} imports {module}"
                assert module != "carbonflow.center.store.schema", f"{path.name} imports the schema"
        for route, method in _routes(tree):
            where = f"{path.name}: {route.name}"
            if isinstance(route, ast.AsyncFunctionDef) and method != "websocket":
                assert (path.name, route.name) in ASYNC_ROUTES, f"{where} is async"
                calls = {
                    n.func.id
                    for n in ast.walk(route)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                }
                assert "run_in_threadpool" in calls, f"{where} is async and does its work on the event loop"
            nested = [n for n in ast.walk(route) if n is not route and isinstance(n, ast.FunctionDef)]
            assert nested == [], f"{where} defines inner functions"
