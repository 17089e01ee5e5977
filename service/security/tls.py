"""TLS from settings: uvicorn's options for HTTPS (and mutual TLS), and the PEM bytes for gRPC servers."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from ..settings import Settings


class TLSConfigError(ValueError):
    """The TLS settings are incomplete or a file cannot be used (the message names which)."""


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes as ``grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
    require_client_auth=client_ca is not None)`` takes them."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


def tls_material(settings: Settings) -> TLSMaterial | None:
    """The configured certificate, key and client CA, checked to load together; None without TLS."""
    if settings.tls_certfile is None and settings.tls_keyfile is None:
        if settings.tls_client_ca is not None:
            raise TLSConfigError("VISIONGATE_TLS_CLIENT_CA needs VISIONGATE_TLS_CERTFILE and "
                                 "VISIONGATE_TLS_KEYFILE")
        return None
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        raise TLSConfigError("TLS needs both VISIONGATE_TLS_CERTFILE and VISIONGATE_TLS_KEYFILE")
    material = TLSMaterial(_read(settings.tls_certfile, "certificate"), _read(settings.tls_keyfile, "key"),
                           _read(settings.tls_client_ca, "client CA") if settings.tls_client_ca else None)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile)
        if settings.tls_client_ca is not None:
            context.load_verify_locations(cafile=str(settings.tls_client_ca))
    except (ssl.SSLError, ValueError) as exc:
        raise TLSConfigError(f"the TLS certificate, key or client CA do not load: {exc}") from None
    return material


def uvicorn_tls_options(settings: Settings) -> dict[str, object]:
    """``uvicorn.Config`` keyword arguments for HTTPS (empty without TLS); mutual TLS with a client CA."""
    if tls_material(settings) is None:
        return {}
    options: dict[str, object] = {"ssl_certfile": str(settings.tls_certfile),
                                  "ssl_keyfile": str(settings.tls_keyfile)}
    if settings.tls_client_ca is not None:
        options |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options
