"""HTTPS and mutual TLS from settings, on the real `visiongate serve`, with certificates made here."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port
from visiongate.service.security import TLSConfigError, tls_material
from visiongate.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command to make certificates")


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, usage: str, san: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    where = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=visiongate test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=where)
    _signed("server", "serverAuth", "IP:127.0.0.1", where)
    _signed("client", "clientAuth", "DNS:client.test", where)
    return where


def _serve(repository: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--port", str(port), "--repository",
         str(repository)], env={**os.environ, "VISIONGATE_LOG_LEVEL": "warning", **env}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _client_context(pki: Path, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_certificate:
        context.load_cert_chain(pki / "client.pem", pki / "client.key")
    return context


def _wait(url: str, context: ssl.SSLContext, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url + "/readyz", verify=context, timeout=2)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def https(lite_repository: Path, pki: Path) -> Iterator[str]:
    yield from _serve(lite_repository, {"VISIONGATE_TLS_CERTFILE": str(pki / "server.pem"),
                                        "VISIONGATE_TLS_KEYFILE": str(pki / "server.key")})


@pytest.fixture(scope="module")
def mutual(lite_repository: Path, pki: Path) -> Iterator[str]:
    yield from _serve(lite_repository, {"VISIONGATE_TLS_CERTFILE": str(pki / "server.pem"),
                                        "VISIONGATE_TLS_KEYFILE": str(pki / "server.key"),
                                        "VISIONGATE_TLS_CLIENT_CA": str(pki / "ca.pem")})


def test_https_serves_with_the_configured_certificate(https: str, pki: Path, chelsea_jpeg: bytes) -> None:
    context = _client_context(pki, with_certificate=False)
    assert _wait(https, context).status_code == 200
    r = httpx.post(https + "/v1/classify?model=efficientnet_lite0", content=chelsea_jpeg, verify=context,
                   headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert r.status_code == 200
    assert r.json()["predictions"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.get(https.replace("https:", "http:") + "/readyz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the test CA refuses it
        httpx.get(https + "/readyz", timeout=5)


def test_mutual_tls_requires_a_client_certificate_signed_by_the_client_ca(mutual: str, pki: Path) -> None:
    assert _wait(mutual, _client_context(pki, with_certificate=True)).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(mutual + "/readyz", verify=_client_context(pki, with_certificate=False), timeout=5)


def test_tls_material_gives_the_pem_bytes_for_grpc(pki: Path) -> None:
    settings = Settings(tls_certfile=pki / "server.pem", tls_keyfile=pki / "server.key",
                        tls_client_ca=pki / "ca.pem")
    material = tls_material(settings)
    assert material is not None
    assert material.cert == (pki / "server.pem").read_bytes() and material.key.startswith(b"-----BEGIN")
    assert material.client_ca == (pki / "ca.pem").read_bytes()
    assert tls_material(Settings()) is None


def test_incomplete_or_mismatched_tls_settings_are_refused_at_start(pki: Path, lite_repository: Path) -> None:
    with pytest.raises(TLSConfigError, match="both"):
        tls_material(Settings(tls_certfile=pki / "server.pem"))
    with pytest.raises(TLSConfigError, match="do not load"):
        tls_material(Settings(tls_certfile=pki / "server.pem", tls_keyfile=pki / "client.key"))
    out = subprocess.run(
        [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--port", str(free_port()),
         "--repository", str(lite_repository)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "VISIONGATE_TLS_CERTFILE": str(pki / "missing.pem"),
             "VISIONGATE_TLS_KEYFILE": str(pki / "server.key")})
    assert out.returncode == 1 and "cannot read the TLS certificate" in out.stderr
    assert "Traceback" not in out.stderr
