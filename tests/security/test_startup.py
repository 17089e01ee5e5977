"""Secure by default: `visiongate serve` beyond loopback without keys refuses to start, and says how to
fix it; loopback, keys, mutual TLS or an explicit VISIONGATE_AUTH=off let it start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from secured_gateway import add_key

from support import free_port, wait_ready
from visiongate.service.security import AuthNotConfigured, build_gate, is_loopback
from visiongate.service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def serve(repository: Path, host: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "visiongate.service.cli", "serve", "--no-export", "--host", host,
         "--port", str(free_port()), "--repository", str(repository)],
        env={**os.environ, "VISIONGATE_LOG_LEVEL": "warning", **env}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serving_on_all_interfaces_without_keys_refuses_with_the_fix(lite_repository: Path,
                                                                       store: Path) -> None:
    proc = serve(lite_repository, "0.0.0.0", {"VISIONGATE_API_KEYS_FILE": str(store)})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "refusing to serve on 0.0.0.0" in err
    assert "visiongate keys create NAME --scopes infer,read" in err and str(store) in err
    assert "VISIONGATE_AUTH=off" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("opt_out", ["keys", "auth-off"])
def test_a_key_or_an_explicit_opt_out_lets_it_start(lite_repository: Path, store: Path, opt_out: str) -> None:
    env = {"VISIONGATE_API_KEYS_FILE": str(store)}
    if opt_out == "keys":
        add_key(store, "web")
    else:
        env["VISIONGATE_AUTH"] = "off"
    proc = serve(lite_repository, "0.0.0.0", env)
    port = proc.args[proc.args.index("--port") + 1]  # type: ignore[union-attr]
    try:
        wait_ready(f"http://127.0.0.1:{port}", path="/healthz")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_policy_follows_the_bind_address_and_the_auth_setting(store: Path, tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("gateway.local")
    loopback = build_gate(Settings(api_keys_file=store))
    assert loopback is not None and not loopback.enforced()  # the two README commands stay two commands
    with pytest.raises(AuthNotConfigured):
        build_gate(Settings(api_keys_file=store, host="0.0.0.0"))
    assert build_gate(Settings(api_keys_file=store, host="0.0.0.0", auth="off")) is None
    strict = build_gate(Settings(api_keys_file=store, auth="on"))
    assert strict is not None and strict.enforced()
    mtls = build_gate(Settings(api_keys_file=store, host="0.0.0.0", tls_certfile=tmp_path / "c",
                               tls_keyfile=tmp_path / "k", tls_client_ca=tmp_path / "ca"))
    assert mtls is not None and not mtls.enforced()
    add_key(store, "web")
    keyed = build_gate(Settings(api_keys_file=store))
    assert keyed is not None and keyed.enforced()  # once keys exist they are required, loopback too
