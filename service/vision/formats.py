"""Which image format a file's first bytes announce: one table for the client, batch scoring and
the gateway (Pillow's format names, and each format's media type)."""

from __future__ import annotations

#: (offset, signature, Pillow format name); WebP's signature follows "RIFF" and 4 length bytes
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WEBP"),
)

#: how many leading bytes ``sniff`` reads
SNIFF_BYTES = 16

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp",
               "TIFF": "image/tiff", "WEBP": "image/webp"}


def sniff(head: bytes) -> str | None:
    """The image format the first bytes announce (``"JPEG"``, ``"PNG"``, ...), or None."""
    for offset, sig, name in _SIGNATURES:
        if head[offset:offset + len(sig)] == sig:
            if name == "WEBP" and head[:4] != b"RIFF":
                continue
            return name
    return None


def media_type(data: bytes) -> str:
    """The media type of an encoded image, ``application/octet-stream`` when unknown."""
    return MEDIA_TYPES.get(sniff(data[:SNIFF_BYTES]) or "", "application/octet-stream")
