"""Which files under SOURCE are images, and reading one with size and content checks.

The work list is every regular file with an image extension under SOURCE (recursive, hidden files
and folders left out), as POSIX paths relative to SOURCE, sorted: the same list on every run and
every pod, which is what makes resuming and sharding deterministic. What cannot be scored is
never skipped silently: a folder that cannot be listed and an image-named entry that is not a
regular file (a FIFO would block the reader forever, a symlink to ``/dev/zero`` never ends) come back
as ``Skipped`` entries, which the run records as error records.

A file whose extension promises an image is *not* trusted: it is opened without blocking, must
still be a regular file once open, is read to at most ``max_bytes`` (whatever its size claims),
and its first bytes must carry a known image signature before it goes to a decoder.

Names that are not valid UTF-8 (``bad\xffname.jpg``) are kept as Python keeps them (surrogate
escapes), so the file can still be opened; ``display_path`` gives the form written to the results.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidImage, PayloadTooLarge
from ..vision.formats import SNIFF_BYTES, sniff

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib",
                              ".tif", ".tiff", ".webp"})

@dataclass(frozen=True)
class Skipped:
    """An entry under SOURCE that cannot be scored: ``rel`` (relative POSIX path), why."""

    rel: str
    error_type: str
    message: str


def display_path(rel: str) -> str:
    """``rel`` as written to the results: valid UTF-8 always. Bytes of a name that are not UTF-8
    appear as ``\\xNN`` (``bad\\xffname.jpg``), the way Python's ``backslashreplace`` writes them."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return rel


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def list_images(root: Path) -> tuple[list[str], int, list[Skipped]]:
    """Every image-named regular file under ``root``: (sorted relative POSIX paths, count of other
    files, entries that cannot be scored).

    Symlinked folders are not followed (no cycles); symlinked files are, when they lead to a
    regular file.
    """
    found: list[str] = []
    other = 0
    skipped: list[Skipped] = []

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else root
        rel = "." if where == root else where.relative_to(root).as_posix()
        skipped.append(Skipped(rel, "UnreadableFolder", f"the folder could not be listed: "
                                                         f"{exc.strerror or exc}; nothing in it was scored"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        for name in filenames:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                other += 1
                continue
            rel = (base / name).relative_to(root).as_posix()
            try:
                mode = os.stat(base / name).st_mode
            except OSError as exc:
                skipped.append(Skipped(rel, "InvalidImage", f"the file could not be read: {exc.strerror or exc}"))
                continue
            if stat.S_ISREG(mode):
                found.append(rel)
            else:
                skipped.append(Skipped(rel, "NotARegularFile", f"the entry is {_kind(mode)}, not an image file"))
    found.sort()
    skipped.sort(key=lambda s: s.rel)
    return found, other, skipped


def read_image(root: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of ``root/rel``, checked: a regular file, not empty, at most ``max_bytes``, an
    image signature.

    Raises ``PayloadTooLarge`` or ``InvalidImage`` (recorded per image by the caller); ``OSError``
    (unreadable, vanished) is translated to ``InvalidImage`` too, since the run must go on. The
    file is opened without blocking (a FIFO put there since the listing must not hang the run) and
    read to at most ``max_bytes + 1`` bytes whatever ``st_size`` says (0 for ``/dev/zero``).
    """
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InvalidImage(f"the file could not be read: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        mode, size = info.st_mode, info.st_size
        if not stat.S_ISREG(mode):
            raise InvalidImage(f"the entry is {_kind(mode)}, not an image file")
        if size > max_bytes:
            raise PayloadTooLarge(f"the file is {size} bytes; the limit is {max_bytes} "
                                  "(--max-file-bytes)", limit=max_bytes)
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise InvalidImage(f"the file could not be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is over the limit of {max_bytes} bytes (--max-file-bytes)",
                              limit=max_bytes)
    if not data:
        raise InvalidImage("the file is empty")
    if sniff(data[:SNIFF_BYTES]) is None:
        raise InvalidImage("the file is not an image: its content has no JPEG, PNG, GIF, BMP, TIFF "
                           "or WebP signature")
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
