"""The key store: hashes only, constant-time lookup, changes picked up without a restart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from visiongate.service.security.keys import (
    KeyStore,
    KeyStoreError,
    hash_key,
    make_entry,
    new_key,
    parse_entries,
    read_file,
    write_file,
)


def test_a_new_key_is_long_random_and_stored_only_as_its_hash(store: Path) -> None:
    key = new_key()
    assert key.startswith("vg_") and len(key) >= 40 and key != new_key()
    write_file(store, [make_entry("web", key, ["infer", "read"])])
    text = store.read_text()
    assert key not in text and key[3:] not in text
    assert json.loads(text)["keys"][0]["sha256"] == hash_key(key)
    assert oct(store.stat().st_mode & 0o777) == "0o600"


def test_lookup_finds_the_key_by_its_hash_and_nothing_else(store: Path) -> None:
    keys = {name: new_key() for name in ("web", "ci", "ops")}
    write_file(store, [make_entry(n, k, ["read"]) for n, k in keys.items()])
    found = KeyStore(store)
    for name, key in keys.items():
        entry = found.lookup(key)
        assert entry is not None and entry.name == name
    assert found.lookup(new_key()) is None
    assert found.lookup(keys["web"] + "x") is None
    assert found.lookup("") is None


def test_keys_added_or_revoked_in_the_file_apply_without_a_restart(store: Path) -> None:
    first = new_key()
    write_file(store, [make_entry("first", first, ["read"])])
    keys = KeyStore(store, check_interval_s=0)
    assert keys.lookup(first) is not None
    second = new_key()
    write_file(store, [*read_file(store), make_entry("second", second, ["read"])])
    assert keys.lookup(second) is not None
    write_file(store, [e for e in read_file(store) if e.name != "first"])
    assert keys.lookup(first) is None and keys.lookup(second) is not None


def test_an_edited_in_place_file_is_noticed_by_its_mtime(store: Path) -> None:
    key = new_key()
    write_file(store, [make_entry("web", key, ["read"])])
    keys = KeyStore(store, check_interval_s=0)
    assert keys.lookup(key) is not None
    doc = json.loads(store.read_text())
    doc["keys"][0]["scopes"] = ["infer"]
    with open(store, "r+") as f:  # same inode and size class: only the mtime tells
        f.write(json.dumps(doc))
        f.truncate()
    later = time.time() + 2
    os.utime(store, (later, later))
    entry = keys.lookup(key)
    assert entry is not None and entry.scopes == ("infer",)


def test_a_broken_file_at_start_is_an_error_naming_the_problem(store: Path) -> None:
    store.parent.mkdir(parents=True)
    store.write_text('{"keys": [{"name": "web", "sha256": "abc", "scopes": ["read"]}]}')
    with pytest.raises(KeyStoreError, match="64 lowercase hex"):
        KeyStore(store)
    store.write_text("{not json")
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        KeyStore(store)


def test_a_broken_file_later_keeps_the_keys_in_force(store: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = new_key()
    write_file(store, [make_entry("web", key, ["read"])])
    keys = KeyStore(store, check_interval_s=0)
    store.write_text('{"keys": [')
    assert keys.lookup(key) is not None
    assert "not reloaded" in caplog.text and key not in caplog.text


@pytest.mark.parametrize("doc, problem", [
    ('{"keys": [{"name": "a b", "sha256": "%s", "scopes": ["read"]}]}', "key name"),
    ('{"keys": [{"name": "a", "sha256": "%s", "scopes": ["root"]}]}', "scopes"),
    ('{"keys": [{"name": "a", "sha256": "%s", "scopes": []}]}', "scopes"),
    ('{"keys": [{"name": "a", "sha256": "%s", "scopes": ["read"], "requests_per_s": -1}]}', "requests_per_s"),
    ('{"keys": [{"name": "a", "sha256": "%s", "scopes": ["read"]}, '
     '{"name": "a", "sha256": "%s", "scopes": ["read"]}]}', "unique"),
    ('{"keys": {}}', "must be"),
])
def test_invalid_entries_are_refused_with_what_is_wrong(doc: str, problem: str) -> None:
    digest = hash_key(new_key())
    with pytest.raises(KeyStoreError, match=problem):
        parse_entries(doc.replace("%s", digest), "test")


def test_environment_keys_join_the_file_keys_and_a_missing_file_is_no_keys(store: Path) -> None:
    key = new_key()
    fixed = parse_entries(json.dumps({"keys": [make_entry("env", key, ["infer"]).to_json()]}), "env")
    keys = KeyStore(store, fixed)
    assert not store.exists()
    entry = keys.lookup(key)
    assert entry is not None and entry.name == "env"
    assert KeyStore(store).entries() == ()


def test_a_rewrite_keeps_a_mode_the_operator_chose(store: Path) -> None:
    write_file(store, [make_entry("web", new_key(), ["read"])])
    store.chmod(0o644)  # e.g. readable by the container's user: the file holds hashes only
    write_file(store, [*read_file(store), make_entry("ci", new_key(), ["infer"])])
    assert oct(store.stat().st_mode & 0o777) == "0o644"
