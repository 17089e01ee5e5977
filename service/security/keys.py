"""API keys: made here, stored as hashes, looked up in constant time, re-read when the store changes.

A key is ``vg_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: with that much
entropy a plain hash is as strong as a slow password hash, and checking it costs a microsecond per
request. The store is a JSON file (``api_keys_file``)::

    {"keys": [{"name": "web", "sha256": "<hex>", "scopes": ["infer", "read"],
               "requests_per_s": 0, "images_per_min": 0, "created": "2026-11-24T10:00:00Z"}]}

plus, optionally, more entries in the same format from the ``api_keys`` setting (an environment
variable). The file is re-read when its mtime, size or inode change (a Kubernetes Secret update swaps
a symlink; the CLI replaces the file atomically), at most once per ``check_interval_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCOPES = ("infer", "read", "admin", "metrics")
KEY_PREFIX = "vg_"
logger = logging.getLogger("visiongate.security")


class KeyStoreError(ValueError):
    """The key store cannot be read or has an invalid entry (the message names which)."""


@dataclass(frozen=True)
class KeyEntry:
    name: str
    sha256: str
    scopes: tuple[str, ...]
    requests_per_s: float = 0.0  # 0 = no limit
    images_per_min: float = 0.0
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "scopes": list(self.scopes)}


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def make_entry(name: str, key: str, scopes: Iterable[str], requests_per_s: float = 0.0,
               images_per_min: float = 0.0) -> KeyEntry:
    entry = KeyEntry(name=name, sha256=hash_key(key), scopes=tuple(scopes), requests_per_s=requests_per_s,
                     images_per_min=images_per_min,
                     created=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"))
    return _validated(entry.to_json(), "new key")


def _validated(raw: object, where: str) -> KeyEntry:
    if not isinstance(raw, dict):
        raise KeyStoreError(f"{where}: each key must be an object, got {type(raw).__name__}")
    name, digest, scopes = raw.get("name"), raw.get("sha256"), raw.get("scopes")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise KeyStoreError(f"{where}: key name must be letters, digits, '-', '_' or '.', got {name!r}")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise KeyStoreError(f"{where}: key {name!r} needs 'sha256', 64 lowercase hex digits")
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        raise KeyStoreError(f"{where}: key {name!r} scopes must be a non-empty list of {list(SCOPES)}, "
                            f"got {scopes!r}")
    limits = {}
    for limit in ("requests_per_s", "images_per_min"):
        value = raw.get(limit, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise KeyStoreError(f"{where}: key {name!r} {limit} must be a number >= 0 (0 = no limit)")
        limits[limit] = float(value)
    return KeyEntry(name=name, sha256=digest, scopes=tuple(scopes), created=str(raw.get("created", "")),
                    **limits)


def parse_entries(text: str, where: str) -> list[KeyEntry]:
    """The entries of a key-store document (``{"keys": [...]}`` or a bare list); empty text = none."""
    if not text.strip():
        return []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeyStoreError(f"{where} is not valid JSON: {exc}") from None
    raw = doc.get("keys") if isinstance(doc, dict) else doc
    if not isinstance(raw, list):
        raise KeyStoreError(f"{where} must be {{\"keys\": [...]}}")
    entries = [_validated(item, where) for item in raw]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise KeyStoreError(f"{where}: key names must be unique, got {sorted(names)}")
    return entries


def read_file(path: Path) -> list[KeyEntry]:
    """The entries of a key file; none when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyStoreError(f"cannot read the key store {path}: {exc.strerror}") from None
    return parse_entries(text, str(path))


def write_file(path: Path, entries: list[KeyEntry]) -> None:
    """Replace the key file atomically (readers see the old or the new file, never half of one). A new
    file is 0600; a replaced one keeps its mode (e.g. made readable by a container's user)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    body = json.dumps({"keys": [e.to_json() for e in entries]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class KeyStore:
    """The keys in force: the file's (re-read when it changes) plus the fixed ones from the environment."""

    path: Path | None
    fixed: list[KeyEntry] = field(default_factory=list)
    check_interval_s: float = 1.0
    _entries: tuple[KeyEntry, ...] = ()
    _signature: tuple[int, int, int] | None = None
    _checked: float = -1e18
    _loaded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._reload(strict=True)

    def entries(self) -> tuple[KeyEntry, ...]:
        now = time.monotonic()
        if now - self._checked >= self.check_interval_s:
            self._checked = now
            self._reload(strict=False)
        return self._entries

    def lookup(self, key: str) -> KeyEntry | None:
        """The entry whose hash matches ``key``. Every entry is compared, in constant time each."""
        digest = hash_key(key)
        found = None
        for entry in self.entries():
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found

    def _signature_now(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload(self, strict: bool) -> None:
        signature = self._signature_now()
        if self._loaded and signature == self._signature:
            return
        with self._lock:
            try:
                from_file = read_file(self.path) if self.path is not None and signature is not None else []
                names = {e.name for e in from_file}
                clash = [e.name for e in self.fixed if e.name in names]
                if clash:
                    raise KeyStoreError(f"keys {clash} are both in {self.path} and in VISIONGATE_API_KEYS")
            except KeyStoreError as exc:
                if strict:
                    raise
                # keep the keys in force: a half-edited file must neither lock everyone out nor open up
                logger.error("key store not reloaded, keeping the %d keys in force: %s",
                             len(self._entries), exc)
                self._signature = signature
                return
            if self._loaded:
                logger.info("key store %s changed: %d keys in force", self.path,
                            len(from_file) + len(self.fixed))
            self._entries = (*from_file, *self.fixed)
            self._signature = signature
            self._loaded = True
