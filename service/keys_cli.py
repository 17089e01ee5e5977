"""``visiongate keys create|list|revoke|rotate``: manage the API-key store the server reads.

A new key is printed once, alone on the last line of standard output (everything else goes to
standard error), so ``KEY=$(visiongate keys create ci --scopes infer)`` captures just the key. Only its
SHA-256 is stored. The server notices changes to the file within a second: no restart.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from .security.keys import SCOPES, KeyEntry, KeyStoreError, make_entry, new_key, read_file, write_file


def _scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise argparse.ArgumentTypeError(f"scopes are a comma-separated list of {', '.join(SCOPES)}; "
                                         f"got {text!r}")
    return list(dict.fromkeys(scopes))


def _limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a limit is a number >= 0 (0 = none), got {text!r}")
    return value


def _store_path(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    from .settings import Settings

    return Settings().api_keys_file


@contextmanager
def _locked(path: Path) -> Iterator[list[KeyEntry]]:
    """The file's entries, under an exclusive lock so two commands do not lose each other's change."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield read_file(path)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_create(args: argparse.Namespace) -> int:
    path = _store_path(args)
    key = new_key()
    with _locked(path) as entries:
        if any(e.name == args.name for e in entries):
            _say(f"a key named {args.name!r} exists in {path}; revoke it, or "
                 f"`visiongate keys rotate {args.name}`")
            return 1
        entry = make_entry(args.name, key, args.scopes, args.requests_per_s, args.images_per_min)
        write_file(path, [*entries, entry])
    _say(f"created key {args.name!r} with scopes {','.join(args.scopes)} in {path}. It is shown once, below; "
         "only its hash is stored. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.")
    print(key, flush=True)
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    path = _store_path(args)
    key = new_key()
    with _locked(path) as entries:
        old = next((e for e in entries if e.name == args.name), None)
        if old is None:
            _say(f"no key named {args.name!r} in {path}")
            return 1
        fresh = make_entry(old.name, key, old.scopes, old.requests_per_s, old.images_per_min)
        write_file(path, [fresh if e.name == args.name else e for e in entries])
    _say(f"key {args.name!r} replaced: the old value stops working within a second. The new one, shown once:")
    print(key, flush=True)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    path = _store_path(args)
    with _locked(path) as entries:
        kept = [e for e in entries if e.name != args.name]
        if len(kept) == len(entries):
            _say(f"no key named {args.name!r} in {path}")
            return 1
        write_file(path, kept)
    _say(f"revoked key {args.name!r} in {path}; a running server stops accepting it within a second")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    path = _store_path(args)
    entries = read_file(path)
    rows = [replace(e, sha256=e.sha256[:8]).to_json() for e in entries]  # a short hash to tell keys apart
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        _say(f"no keys in {path}")
    else:
        for r in rows:
            limits = ", ".join(f"{k}={r[k]:g}" for k in ("requests_per_s", "images_per_min") if r[k])
            print(f"{r['name']:<20} {','.join(r['scopes']):<24} {limits or 'no limits':<40} "
                  f"sha256 {r['sha256']}…  {r['created']}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.keys_func(args))
    except KeyStoreError as exc:
        _say(f"visiongate keys: {exc}")
        return 1


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list, rotate and revoke API keys (the server re-reads them)",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys.set_defaults(func=run)
    actions = keys.add_subparsers(dest="keys_command", required=True)

    def with_file(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--file", type=Path, help="key store (default: VISIONGATE_API_KEYS_FILE, else "
                       "~/.config/visiongate/keys.json)")
        return p

    create = with_file(actions.add_parser("create", help="make a key; prints it once on standard output"))
    create.add_argument("name", help="who or what uses the key (letters, digits, - _ .)")
    create.add_argument("--scopes", type=_scopes, default=["infer", "read"],
                        help=f"comma-separated, of {','.join(SCOPES)} (default: infer,read)")
    create.add_argument("--requests-per-s", type=_limit, default=0.0, help="rate limit (0 = none)")
    create.add_argument("--images-per-min", type=_limit, default=0.0, help="rate limit (0 = none)")
    create.set_defaults(keys_func=cmd_create)
    rotate = with_file(actions.add_parser("rotate", help="new value for a key, same name, scopes and limits"))
    rotate.add_argument("name")
    rotate.set_defaults(keys_func=cmd_rotate)
    revoke = with_file(actions.add_parser("revoke", help="remove a key"))
    revoke.add_argument("name")
    revoke.set_defaults(keys_func=cmd_revoke)
    listing = with_file(actions.add_parser("list", help="names, scopes, limits (never the keys)"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(keys_func=cmd_list)
