"""The one-file multipart upload, read without the general multipart parser.

Nearly every multipart request a vision endpoint gets is one file in one part (``curl -F``, browser
forms, aiohttp, httpx, requests). Taking that part's bytes straight out of the body costs a few
microseconds against ~60 for the general parser (python-multipart through Starlette's form API,
which also wraps each file in a temporary-file object). Anything else (several parts, a transfer
encoding, unusual headers, a malformed body) returns ``None`` and goes to the general parser,
which also produces the error messages.
"""

from __future__ import annotations

import re

# RFC 2046: at most 70 characters from a restricted set; quoted when it holds special characters
_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]{1,70})"|([0-9A-Za-z\'()+_,\-./:=?]{1,70}))', re.IGNORECASE)
# the part's field name: a ``name=`` parameter (not ``filename=``), quoted, no escapes
_NAME = re.compile(rb';\s*name\s*=\s*"([^"\\\r\n]*)"', re.IGNORECASE)
_ALLOWED_HEADERS = (b"content-disposition", b"content-type")


def _delimiter(content_type: str) -> bytes | None:
    m = _BOUNDARY.search(content_type)
    return None if m is None else b"--" + (m.group(1) or m.group(2)).encode("ascii")


def without_preamble(body: bytes, content_type: str) -> bytes:
    """``body`` from its first delimiter on.

    RFC 2046 (5.1.1) lets a preamble precede the first delimiter and says to ignore it; the general
    parser (python-multipart) refuses a body that does not start with the delimiter instead.
    """
    delimiter = _delimiter(content_type)
    if delimiter is None or body.startswith(delimiter):
        return body
    found = body.find(b"\r\n" + delimiter)
    return body if found < 0 else body[found + 2:]


def single_file(body: bytes, content_type: str, fields: tuple[str, ...]) -> bytes | None:
    """The file's bytes when ``body`` is exactly one part whose field name is in ``fields``
    (after a preamble, if one is there)."""
    delimiter = _delimiter(content_type)
    if delimiter is None:
        return None
    body = without_preamble(body, content_type)
    if not body.startswith(delimiter + b"\r\n"):
        return None
    head_start = len(delimiter) + 2
    head_end = body.find(b"\r\n\r\n", head_start)
    if head_end < 0:
        return None
    name = None
    for line in body[head_start:head_end].split(b"\r\n"):
        key, sep, value = line.partition(b":")
        key = key.strip().lower()
        if not sep or key not in _ALLOWED_HEADERS:
            return None
        if key == b"content-disposition":
            if not value.strip().lower().startswith(b"form-data"):
                return None
            found = _NAME.search(value)
            name = found.group(1).decode("latin-1") if found else None
    if name not in fields:
        return None
    start = head_end + 4
    end = body.find(b"\r\n" + delimiter, start)
    if end < 0 or not body.startswith(b"--", end + 2 + len(delimiter)):  # another part follows
        return None
    return body[start:end]
