"""TLS contexts, built in one place for every link that leaves a process: collector -> center over
HTTPS, collector and center -> MQTT broker (mqtts), center -> center (cascade), and the center's own
HTTPS server.

A client context verifies the peer against ``ca_file`` (a private CA such as ``carbonflow certs init``
makes) or, without one, the system's CAs; host names are always checked.  ``cert_file``/``key_file``
add a client certificate (the broker maps its CN to the MQTT user name).  Any unusable file is one
:class:`TlsError` line naming it, before a connection is tried.
"""

from __future__ import annotations

import ssl
from pathlib import Path

# TLS 1.2 is the floor: mosquitto 2.0 and every Python client here speak 1.3 as well
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(ValueError):
    """A TLS file that cannot be used; the message is one line naming the file."""


def both_or_neither(cert_file: str | None, key_file: str | None, cert_name: str, key_name: str) -> None:
    """A certificate without its key (or a key without its certificate) is a configuration mistake."""
    if (cert_file is None) != (key_file is None):
        given, missing = (cert_name, key_name) if cert_file is not None else (key_name, cert_name)
        raise TlsError(f"{given} is set but {missing} is not: give both or neither")


def _readable(path: str | Path, what: str) -> Path:
    candidate = Path(path)
    try:
        with candidate.open("rb"):
            pass
    except OSError as error:
        raise TlsError(f"{what} {candidate}: {(error.strerror or str(error)).lower()}") from None
    return candidate


def _load_chain(context: ssl.SSLContext, cert_file: str | Path, key_file: str | Path) -> None:
    cert, key = _readable(cert_file, "certificate"), _readable(key_file, "key")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise TlsError(f"certificate {cert} with key {key}: {error.reason or error}") from None


def client_context(
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """A context that verifies the server (``ca_file``, else the system CAs) and its host name, and
    presents ``cert_file``/``key_file`` when given."""
    both_or_neither(
        None if cert_file is None else str(cert_file), None if key_file is None else str(key_file),
        "cert_file", "key_file",
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MINIMUM_VERSION
    if ca_file is not None:
        ca = _readable(ca_file, "CA file")
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as error:
            raise TlsError(f"CA file {ca}: not a PEM certificate ({error.reason or error})") from None
    if cert_file is not None and key_file is not None:
        _load_chain(context, cert_file, key_file)
    return context


def check_server_files(cert_file: str | Path, key_file: str | Path) -> None:
    """Load a server's certificate and key once, so a bad file stops the start with one line instead
    of a traceback from inside the web server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(context, cert_file, key_file)


def uvicorn_ssl(cert_file: str | Path | None, key_file: str | Path | None) -> dict[str, str]:
    """uvicorn's options for HTTPS with these files (checked), or none for plain HTTP."""
    if cert_file is None or key_file is None:
        return {}
    check_server_files(cert_file, key_file)
    return {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
