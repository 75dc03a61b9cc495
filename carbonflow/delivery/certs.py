"""A local certificate authority for carbonflow's links (``carbonflow certs init``, ``demo --tls``).

One directory holds::

    ca.pem, ca.key            the CA every party trusts (keep ca.key offline once the certificates exist)
    center.pem, center.key    the center: HTTPS server, and its client identity at the MQTT broker
                              (CN ``carbonflow-center``: the broker's ACL user of the center)
    broker.pem, broker.key    the MQTT broker's server certificate
    collectors/ID.pem, .key   one client certificate per collector, CN = the collector id (the broker
                              takes the CN as the user name, and the ACL lets it use only its topics)

Keys are ECDSA P-256 (small, fast, and accepted by mosquitto, browsers and Python alike) and written
with mode 0600.  Server certificates carry every given host as a subject alternative name (an IP
address as an IP SAN: clients never match an IP against a DNS SAN).  Nothing existing is overwritten
unless ``force``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carbonflow.messages.base import ID_PATTERN

CENTER_IDENTITY = "carbonflow-center"  # the center's CN: its MQTT user name in deploy/mosquitto/acl
BROKER_IDENTITY = "carbonflow-broker"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
CA_VALID_DAYS = 3650
DEFAULT_VALID_DAYS = 825  # the longest leaf validity Apple's TLS clients accept
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(?:\.{_DNS_LABEL})*$")


class CertError(ValueError):
    """Bad input to the certificate authority; the message is one line."""


@dataclass
class IssuedCerts:
    directory: Path
    written: list[Path] = field(default_factory=list)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def pair(self, name: str) -> tuple[Path, Path]:
        """``center``, ``broker`` or ``collectors/ID``: its certificate and key files."""
        return self.directory / f"{name}.pem", self.directory / f"{name}.key"

    def collector(self, collector_id: str) -> tuple[Path, Path]:
        return self.pair(f"collectors/{collector_id}")


def parse_hosts(text: str) -> list[str]:
    """``"127.0.0.1,localhost"`` -> the hosts, each an IP address or a DNS name."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise CertError("--hosts: give at least one host name or IP address")
    for host in hosts:
        if not _is_ip(host) and not _DNS_NAME.match(host):
            raise CertError(f"--hosts: {host!r} is neither an IP address nor a host name")
    return list(dict.fromkeys(hosts))


def parse_collectors(text: str, what: str = "--collectors") -> list[str]:
    """``"C1,C2"`` -> collector ids (the id pattern of every carbonflow id; never the center's CN)."""
    ids = [c.strip() for c in text.split(",") if c.strip()]
    for collector_id in ids:
        if not re.match(ID_PATTERN, collector_id) or len(collector_id) > 64:  # 64: the CN's X.509 limit
            raise CertError(f"{what}: {collector_id!r} is not a collector id (letters, digits, _ . -)")
        if collector_id in (CENTER_IDENTITY, BROKER_IDENTITY):
            raise CertError(f"{what}: {collector_id!r} is reserved for the center or broker")
    duplicate = next((c for c in ids if ids.count(c) > 1), None)
    if duplicate is not None:
        raise CertError(f"{what}: {duplicate!r} appears twice")
    return ids


def _check_validity(valid_days: int) -> None:
    if not 1 <= valid_days <= CA_VALID_DAYS:  # a certificate outliving its CA would fail before its date
        raise CertError(f"--days {valid_days}: must be from 1 to {CA_VALID_DAYS} (the CA's own validity)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "carbonflow"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, public_key, valid_days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a peer whose clock is a little behind
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder("carbonflow local CA", _name("carbonflow local CA"), key.public_key(), CA_VALID_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    valid_days: int,
    hosts: list[str] | None = None,
    server: bool = False,
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key(), valid_days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        names = [x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool) -> None:
    """Keys are created 0600 from the first byte (never world-readable, not even for an instant)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)  # an existing file (--force) keeps its mode otherwise
        os.write(fd, data)
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def init_certs(
    directory: str | Path,
    hosts: list[str] | tuple[str, ...] = DEFAULT_HOSTS,
    collectors: list[str] | tuple[str, ...] = (),
    *,
    valid_days: int = DEFAULT_VALID_DAYS,
    force: bool = False,
) -> IssuedCerts:
    """A new CA and every certificate under ``directory``; refuses to replace files unless ``force``."""
    _check_validity(valid_days)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CertError(f"{directory}: exists and is not a directory")
    issued = IssuedCerts(directory)
    names = ["center", "broker", *(f"collectors/{c}" for c in collectors)]
    targets = [issued.ca_file, directory / "ca.key"] + [p for n in names for p in issued.pair(n)]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise CertError(f"{existing[0]} exists: refusing to overwrite (--force replaces every certificate)")
    ca_key, ca_cert = _new_ca()
    _write(directory / "ca.key", _key_pem(ca_key), private=True)
    _write(issued.ca_file, _cert_pem(ca_cert), private=False)
    issued.written += [directory / "ca.key", issued.ca_file]
    leaves = [
        ("center", CENTER_IDENTITY, list(hosts), True, True),  # HTTPS server + MQTT client of the broker
        ("broker", BROKER_IDENTITY, list(hosts), True, False),
        *((f"collectors/{c}", c, None, False, True) for c in collectors),
    ]
    for name, common_name, sans, server, client in leaves:
        key, cert = _leaf(ca_key, ca_cert, common_name, valid_days, sans, server=server, client=client)
        cert_path, key_path = issued.pair(name)
        _write(key_path, _key_pem(key), private=True)
        _write(cert_path, _cert_pem(cert), private=False)
        issued.written += [cert_path, key_path]
    return issued


def add_collectors(
    directory: str | Path, collectors: list[str], *, valid_days: int = DEFAULT_VALID_DAYS, force: bool = False
) -> IssuedCerts:
    """Client certificates for more collectors, signed by the CA already in ``directory``."""
    _check_validity(valid_days)
    if not collectors:
        raise CertError("give at least one collector id")
    issued = IssuedCerts(Path(directory))
    try:
        ca_cert = x509.load_pem_x509_certificate(issued.ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key((issued.directory / "ca.key").read_bytes(), password=None)
    except OSError as error:
        raise CertError(
            f"{error.filename}: {(error.strerror or str(error)).lower()} (run certs init first)"
        ) from None
    except ValueError as error:
        raise CertError(f"{issued.directory}: the CA cannot be read ({error})") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or ca_key.public_key() != ca_cert.public_key():
        raise CertError(f"{issued.directory}: ca.key is not the key of ca.pem")
    targets = [p for c in collectors for p in issued.collector(c)]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise CertError(f"{existing[0]} exists: refusing to overwrite (--force replaces it)")
    for collector_id in collectors:
        key, cert = _leaf(ca_key, ca_cert, collector_id, valid_days, client=True)
        cert_path, key_path = issued.collector(collector_id)
        _write(key_path, _key_pem(key), private=True)
        _write(cert_path, _cert_pem(cert), private=False)
        issued.written += [cert_path, key_path]
    return issued


def covers_hosts(cert_file: str | Path, hosts: list[str] | tuple[str, ...]) -> bool:
    """Does the server certificate name every one of ``hosts``? (False for a missing or bad file.)"""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    named = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(
        sans.get_values_for_type(x509.DNSName)
    )
    return all(h in named for h in hosts)


def ensure_certs(directory: str | Path, hosts: list[str], collectors: list[str]) -> IssuedCerts:
    """The certificates under ``directory`` when they are all there and name ``hosts``, else new ones
    (the demo: kept between runs, so a browser that trusts its CA keeps trusting it)."""
    issued = IssuedCerts(Path(directory))
    names = ["center", "broker", *(f"collectors/{c}" for c in collectors)]
    files = [issued.ca_file, issued.directory / "ca.key"] + [p for n in names for p in issued.pair(n)]
    if all(p.exists() for p in files) and covers_hosts(issued.pair("center")[0], hosts):
        return issued
    return init_certs(directory, hosts, collectors, force=True)
