"""TLS: ``carbonflow certs init`` (a local CA and the certificates of center, broker and collectors),
the TLS contexts of :mod:`carbonflow.delivery.tls`, the center serving HTTPS itself (settings, Secure
cookie) and a collector delivering over HTTPS with the CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
import threading
import time

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.x509.oid import NameOID
from test_store import batch, seed

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.api.settings import SettingsError
from carbonflow.center.store import Store, count_readings
from carbonflow.center.store.users import create_user
from carbonflow.cli import main
from carbonflow.collector.config import config_from_dict, load_config
from carbonflow.collector.remote_config import validate_config_text
from carbonflow.collector.transport import HttpTransport
from carbonflow.delivery.certs import CENTER_IDENTITY, init_certs
from carbonflow.delivery.tls import TlsError, client_context
from carbonflow.messages.collector_config import ConfigError


def common_name(path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_certs_init_makes_a_ca_server_and_collector_certificates_with_private_keys(tmp_path, capsys):
    target = tmp_path / "pki"
    assert (
        main(["certs", "init", str(target), "--hosts", "127.0.0.1,center.example", "--collectors", "C1,C2"])
        == 0
    )
    assert "certificates in" in capsys.readouterr().out
    names = ["ca", "center", "broker", "collectors/C1", "collectors/C2"]
    for name in names:
        assert stat.S_IMODE((target / f"{name}.key").stat().st_mode) == 0o600, name
        assert (target / f"{name}.pem").exists()
    assert common_name(target / "center.pem") == CENTER_IDENTITY
    assert common_name(target / "collectors" / "C2.pem") == "C2"  # the broker's user name for C2
    center = x509.load_pem_x509_certificate((target / "center.pem").read_bytes())
    sans = center.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["center.example"]
    # every certificate is signed by the CA: a context trusting ca.pem loads each chain
    context = client_context(target / "ca.pem", target / "collectors/C1.pem", target / "collectors/C1.key")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_certs_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    target = tmp_path / "pki"
    assert main(["certs", "init", str(target)]) == 0
    before = (target / "ca.pem").read_bytes()
    assert main(["certs", "init", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists: refusing to overwrite" in err and "\n" not in err
    assert (target / "ca.pem").read_bytes() == before
    assert main(["certs", "init", str(target), "--force"]) == 0
    assert (target / "ca.pem").read_bytes() != before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--hosts", "bad host"], "is neither an IP address nor a host name"),
        (["--hosts", ","], "at least one host"),
        (["--collectors", "C1,C1"], "appears twice"),
        (["--collectors", "a/b"], "is not a collector id"),
        (["--collectors", CENTER_IDENTITY], "reserved"),
        (["--days", "0"], "must be from 1 to"),
        (["--days", "99999"], "the CA's own validity"),
    ],
)
def test_bad_certs_input_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    assert main(["certs", "init", str(tmp_path / "pki"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("carbonflow certs: error: ") and says in err and "\n" not in err, err
    assert not (tmp_path / "pki" / "ca.key").exists()


def test_certs_init_into_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["certs", "init", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_certs_collector_issues_more_collectors_from_the_existing_ca(tmp_path, capsys):
    target = tmp_path / "pki"
    assert main(["certs", "init", str(target), "--collectors", "C1"]) == 0
    ca = (target / "ca.pem").read_bytes()
    assert main(["certs", "collector", str(target), "C3", "C4"]) == 0
    assert (target / "ca.pem").read_bytes() == ca  # same CA: nobody else needs anything new
    assert common_name(target / "collectors" / "C4.pem") == "C4"
    assert stat.S_IMODE((target / "collectors" / "C3.key").stat().st_mode) == 0o600
    client_context(target / "ca.pem", target / "collectors" / "C3.pem", target / "collectors" / "C3.key")
    capsys.readouterr()
    assert main(["certs", "collector", str(target), "C1"]) == 2
    assert "C1.pem exists: refusing to overwrite" in capsys.readouterr().err
    assert main(["certs", "collector", str(tmp_path / "none"), "C5"]) == 2
    assert "run certs init first" in capsys.readouterr().err
    assert main(["certs", "collector", str(target), "a/b"]) == 2
    assert "collector id: 'a/b' is not a collector id" in capsys.readouterr().err


def test_an_unusable_tls_file_is_one_line_naming_it(tmp_path):
    issued = init_certs(tmp_path / "pki")
    with pytest.raises(TlsError, match=r"CA file .*missing\.pem: no such file"):
        client_context(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(TlsError, match="not a PEM certificate"):
        client_context(garbage)
    center_cert, _ = issued.pair("center")
    _, broker_key = issued.pair("broker")
    with pytest.raises(TlsError, match="with key"):  # a certificate with somebody else's key
        client_context(issued.ca_file, center_cert, broker_key)
    with pytest.raises(TlsError, match="give both or neither"):
        client_context(issued.ca_file, center_cert, None)


# --- the center serving HTTPS ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def pki(tmp_path):
    return init_certs(tmp_path / "pki", ["127.0.0.1", "localhost"], ["C1", "C2"])


@pytest.fixture
def https_center(tmp_path, pki):
    """The real center app on uvicorn with the center's certificate, in a thread; yields its URL."""
    cert, key = pki.pair("center")
    settings = CenterSettings(
        database_url=f"sqlite:///{tmp_path / 'center.db'}", tls_cert_file=str(cert), tls_key_file=str(key),
        maintenance_period_s=0, alarm_tick_s=0,
    )  # fmt: skip
    store = Store.open(settings.database_url)
    seed(store)  # collector C1 (secret "secret-1") and its devices
    create_user(store, "admin", "a long password", "admin")
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, store=store),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **settings.uvicorn_ssl(),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the HTTPS center did not start"
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_the_center_serves_https_and_its_session_cookie_is_secure(https_center, pki):
    url, _store = https_center
    with httpx.Client(base_url=url, verify=client_context(pki.ca_file)) as client:
        login = client.post("/api/v1/login", json={"name": "admin", "password": "a long password"})
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie, cookie
    assert "max-age" in login.headers.get("strict-transport-security", "").lower()


def test_a_client_without_the_ca_or_over_plain_http_gets_nothing(https_center):
    url, _store = https_center
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/healthz")  # the system CAs do not know the local CA
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)


def test_a_collector_delivers_a_batch_over_https_trusting_the_ca(https_center, pki, tmp_path):
    url, store = https_center
    cert, key = pki.collector("C1")
    document = {
        "id": "C1",
        "secret": "secret-1",
        "center": {"url": url, "ca_file": "pki/ca.pem", "cert_file": str(cert), "key_file": str(key)},
    }
    config = config_from_dict(document, "collector.toml", tmp_path)  # ca_file relative to the file's folder
    body = batch("tls-0001", [("EM-U1/1", 0, "1206.42")]).signed(b"secret-1").model_dump_json().encode()

    async def deliver():
        transport = HttpTransport(config)
        await transport.start()
        try:
            return await transport.send_batch("tls-0001", body), await transport.next_commands()
        finally:
            await transport.stop()

    result, commands = asyncio.run(deliver())
    assert result.outcome == "acked", result
    assert commands == []
    assert count_readings(store) == 1


def test_tls_settings_come_in_pairs_and_mqtt_tls_needs_mqtts():
    with pytest.raises(SettingsError) as caught:
        CenterSettings.from_env({"CARBONFLOW_TLS_CERT_FILE": "/etc/carbonflow/center.pem"})
    message = str(caught.value)
    assert message == (
        "CARBONFLOW_TLS_CERT_FILE is set but CARBONFLOW_TLS_KEY_FILE is not: give both or neither"
    ), message
    with pytest.raises(SettingsError, match="CARBONFLOW_MQTT_URL must be mqtts://"):
        CenterSettings.from_env({"CARBONFLOW_MQTT_URL": "mqtt://b:1883", "CARBONFLOW_MQTT_CA_FILE": "ca.pem"})
    with pytest.raises(SettingsError, match="CARBONFLOW_MQTT_KEY_FILE is set but CARBONFLOW_MQTT_CERT_FILE"):
        CenterSettings.from_env({"CARBONFLOW_MQTT_URL": "mqtts://b", "CARBONFLOW_MQTT_KEY_FILE": "k.pem"})
    assert not CenterSettings.from_env({}).tls_enabled


def test_center_serve_with_a_missing_certificate_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CARBONFLOW_TLS_CERT_FILE", str(tmp_path / "nope.pem"))
    monkeypatch.setenv("CARBONFLOW_TLS_KEY_FILE", str(tmp_path / "nope.key"))
    assert main(["center", "serve", "--port", "1", "--database", f"sqlite:///{tmp_path / 'c.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("carbonflow center: error: certificate ") and "no such file" in err and "\n" not in err
    )
    monkeypatch.delenv("CARBONFLOW_TLS_KEY_FILE")
    assert main(["center", "serve", "--port", "1"]) == 2
    assert "give both or neither" in capsys.readouterr().err
    monkeypatch.delenv("CARBONFLOW_TLS_CERT_FILE")
    monkeypatch.setenv("CARBONFLOW_MQTT_CA_FILE", str(tmp_path / "ca.pem"))  # the option must fit it too
    assert main(["center", "serve", "--port", "1", "--mqtt", "mqtt://127.0.0.1:1883"]) == 2
    assert "CARBONFLOW_MQTT_URL must be mqtts://" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("center", "says"),
    [
        (
            {"url": "http://c:8080", "ca_file": "ca.pem"},
            "ca_file: TLS options need an https:// or mqtts:// url",
        ),
        ({"url": "https://c:8080", "cert_file": "c.pem"}, "cert_file and key_file: give both or neither"),
        ({"url": "https://c:8080", "ca_file": "missing.pem"}, "center: CA file"),
    ],
)
def test_bad_collector_tls_options_are_one_config_error_line(tmp_path, center, says):
    (tmp_path / "collector.toml").write_text(
        "id = 'C1'\nsecret = 'secret-1'\n[center]\n" + "".join(f"{k} = '{v}'\n" for k, v in center.items())
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "collector.toml")
    assert says in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_a_pushed_configuration_with_a_missing_ca_file_is_refused_before_it_is_installed(tmp_path):
    current = config_from_dict({"id": "C1", "secret": "secret-1", "center": {"url": "http://c:80"}}, "c.toml")
    pushed = (
        "id = 'C1'\nsecret = 'secret-1'\nconfig_version = 'v2'\n"
        "[center]\nurl = 'https://c:443'\nca_file = 'gone.pem'\n"
    )
    with pytest.raises(ConfigError, match=r"center: CA file .*gone\.pem: no such file"):
        validate_config_text(pushed, "v2", current, tmp_path / "collector.toml")
