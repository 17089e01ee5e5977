"""API keys with scopes, per-key rate limits and TLS for the gateway; ``install_security`` wires them."""

from .auth import AuthMiddleware, Gate, key_from_headers, key_from_metadata
from .install import AuthNotConfigured, build_gate, install_security, is_loopback
from .keys import SCOPES, KeyEntry, KeyStore, KeyStoreError
from .ratelimit import charge_images
from .scopes import scope_for
from .tls import TLSConfigError, TLSMaterial, tls_material, uvicorn_tls_options

__all__ = [
    "SCOPES", "AuthMiddleware", "AuthNotConfigured", "Gate", "KeyEntry", "KeyStore", "KeyStoreError",
    "TLSConfigError", "TLSMaterial", "build_gate", "charge_images", "install_security", "is_loopback",
    "key_from_headers", "key_from_metadata", "scope_for", "tls_material", "uvicorn_tls_options",
]
