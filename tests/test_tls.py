"""TLS: ``carbonflow certs init`` (a local CA and the certificates of center, broker and collectors),
the TLS contexts of :mod:`carbonflow.delivery.tls`, the center serving HTTPS itself (settings, Secure
cookie) and a collector delivering over HTTPS with the CA."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from carbonflow.cli import main
from carbonflow.delivery.certs import CENTER_IDENTITY, init_certs
from carbonflow.delivery.tls import TlsError, client_context


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
        (["--days", "0"], "at least 1"),
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
