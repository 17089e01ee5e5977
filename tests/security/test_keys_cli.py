"""`visiongate keys`: the real command, in a child process, against a real key file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from visiongate.service.security.keys import KeyStore, hash_key

ROOT = Path(__file__).resolve().parents[2]


def keys(*args: str, store: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--file", str(store)] if store is not None else []
    return subprocess.run([sys.executable, "-m", "visiongate.service.cli", "keys", *args[:1], *extra, *args[1:]],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_create_prints_only_the_key_on_stdout_and_stores_only_its_hash(store: Path) -> None:
    out = keys("create", "web", "--scopes", "infer,read", "--requests-per-s", "5", store=store)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vg_")
    key = lines[0]
    assert "web" in out.stderr and key not in out.stderr
    stored = json.loads(store.read_text())["keys"]
    assert stored == [{**stored[0], "name": "web", "sha256": hash_key(key), "scopes": ["infer", "read"],
                       "requests_per_s": 5.0, "images_per_min": 0.0}]
    assert key not in store.read_text()
    entry = KeyStore(store).lookup(key)
    assert entry is not None and entry.name == "web"


def test_the_default_store_is_named_by_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere" / "keys.json"
    out = keys("create", "ops", "--scopes", "admin", env={"VISIONGATE_API_KEYS_FILE": str(store)})
    assert out.returncode == 0, out.stderr
    assert KeyStore(store).lookup(out.stdout.strip()) is not None


def test_list_shows_names_scopes_and_limits_never_keys(store: Path) -> None:
    key = keys("create", "web", "--scopes", "infer", "--images-per-min", "600", store=store).stdout.strip()
    keys("create", "grafana", "--scopes", "metrics", store=store)
    listing = keys("list", store=store)
    assert listing.returncode == 0
    assert "web" in listing.stdout and "images_per_min=600" in listing.stdout and "grafana" in listing.stdout
    assert key not in listing.stdout and hash_key(key) not in listing.stdout
    rows = json.loads(keys("list", "--json", store=store).stdout)
    assert [r["name"] for r in rows] == ["web", "grafana"]


def test_revoke_removes_the_key_and_rotate_replaces_its_value(store: Path) -> None:
    old = keys("create", "web", "--scopes", "infer,read", store=store).stdout.strip()
    rotated = keys("rotate", "web", store=store)
    assert rotated.returncode == 0
    new = rotated.stdout.strip()
    found = KeyStore(store)
    assert found.lookup(old) is None
    entry = found.lookup(new)
    assert entry is not None and entry.scopes == ("infer", "read")
    assert keys("revoke", "web", store=store).returncode == 0
    assert KeyStore(store).entries() == ()
    again = keys("revoke", "web", store=store)
    assert again.returncode == 1 and "no key named 'web'" in again.stderr


def test_mistakes_are_refused_with_the_reason(store: Path) -> None:
    bad_scope = keys("create", "web", "--scopes", "infer,root", store=store)
    assert bad_scope.returncode == 2 and "infer, read, admin, metrics" in bad_scope.stderr
    bad_name = keys("create", "has space", store=store)
    assert bad_name.returncode == 1 and "key name" in bad_name.stderr
    assert keys("create", "web", store=store).returncode == 0
    twice = keys("create", "web", store=store)
    assert twice.returncode == 1 and "exists" in twice.stderr and twice.stdout == ""
