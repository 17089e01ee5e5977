"""Which files under SOURCE are images, and reading one with size and content checks.

The work list is every file with an image extension under SOURCE (recursive, hidden files and
folders left out), as POSIX paths relative to SOURCE, sorted: the same list on every run and every
pod, which is what makes resuming and sharding deterministic. A file whose extension promises an
image is *not* trusted: its first bytes must carry a known image signature before it goes to a
decoder; otherwise it is recorded as an error, not skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidImage, PayloadTooLarge

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib",
                              ".tif", ".tiff", ".webp"})

#: (offset, signature, format name)
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WEBP"),  # after "RIFF" + 4 length bytes
)


def list_images(root: Path) -> tuple[list[str], int]:
    """Every image-named file under ``root``: (sorted relative POSIX paths, count of other files).

    Symlinked folders are not followed (no cycles); symlinked files are.
    """
    found: list[str] = []
    other = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        for name in filenames:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((base / name).relative_to(root).as_posix())
            else:
                other += 1
    found.sort()
    return found, other


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce, or None."""
    for offset, sig, name in _SIGNATURES:
        if head[offset:offset + len(sig)] == sig:
            if name == "WEBP" and head[:4] != b"RIFF":
                continue
            return name
    return None


def read_image(root: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of ``root/rel``, checked: not empty, at most ``max_bytes``, an image signature.

    Raises ``PayloadTooLarge`` or ``InvalidImage`` (recorded per image by the caller); ``OSError``
    (unreadable, vanished) is translated to ``InvalidImage`` too, since the run must go on.
    """
    path = root / rel
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PayloadTooLarge(f"the file is {size} bytes; the limit is {max_bytes} "
                                  "(--max-file-bytes)", limit=max_bytes)
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidImage(f"the file could not be read: {exc.strerror or exc}") from exc
    if not data:
        raise InvalidImage("the file is empty")
    if sniff(data[:16]) is None:
        raise InvalidImage("the file is not an image: its content has no JPEG, PNG, GIF, BMP, TIFF "
                           "or WebP signature")
    return data
