"""The hostile checklist as a test: every bad input on every task endpoint of a real gateway
process gets a 4xx JSON error naming what was wrong (never a 5xx, never a hang), and the keep-alive
connection it arrived on still serves the next request."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from support import encode, photo

ENDPOINTS = ["/v1/classify", "/v1/detect", "/v1/detect?annotated=true", "/v1/super-resolve"]


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))


def _saved(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo("astronaut")[:32, :32]).save(buf, format=fmt)
    return buf.getvalue()


JPEG = encode(photo("coffee")[:64, :64], quality=90)
B64 = base64.b64encode(JPEG).decode()
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n"

#: name -> (content type, body, expected status, expected error type)
CASES: dict[str, tuple[str, bytes, int, str]] = {
    "empty body": ("image/jpeg", b"", 400, "EmptyBody"),
    "text as jpeg": ("image/jpeg", b"not a photo at all", 400, "InvalidImage"),
    "truncated jpeg": ("image/jpeg", JPEG[: len(JPEG) // 2], 400, "InvalidImage"),
    "eps (Ghostscript)": ("image/jpeg", EPS, 400, "InvalidImage"),
    "ppm (not allowlisted)": ("application/octet-stream", _saved("PPM"), 400, "InvalidImage"),
    "pixel bomb header": ("image/png", _png_header_only(60_000, 60_000), 413, "ImageTooLarge"),
    "over the pixel limit": ("image/png", _png_header_only(8_000, 8_000), 413, "ImageTooLarge"),
    "unsupported media type": ("text/plain", b"hello", 415, "UnsupportedMediaType"),
    "deeply nested json": ("application/json", b'{"image":' + b"[" * 1100 + b"]" * 1100 + b"}", 400,
                           "InvalidArgument"),
    "json number of 5000 digits": ("application/json", b'{"image":' + b"9" * 5000 + b"}", 400, "InvalidArgument"),
    "json not an object": ("application/json", b"[1, 2, 3]", 400, "InvalidArgument"),
    "json null": ("application/json", b"null", 400, "InvalidArgument"),
    "json invalid utf-8": ("application/json", b'{"image": "\xff\xfe"}', 400, "InvalidArgument"),
    "json two keys": ("application/json", json.dumps({"image": B64, "url": "http://x/"}).encode(), 400,
                      "InvalidArgument"),
    "json image not a string": ("application/json", b'{"image": {"a": 1}}', 400, "InvalidArgument"),
    "json images not a list": ("application/json", json.dumps({"images": B64}).encode(), 400, "InvalidArgument"),
    "json images with null": ("application/json", b'{"images": [null]}', 400, "InvalidArgument"),
    "json bad base64": ("application/json", b'{"image": "@@@@"}', 400, "InvalidImage"),
    "json data url without base64": ("application/json", b'{"image": "data:image/png,abcd"}', 400, "InvalidImage"),
    "json url while fetching is off": ("application/json", b'{"url": "http://[::1/"}', 400, "InvalidArgument"),
    "multipart without boundary": ("multipart/form-data", b"--x\r\n\r\n", 400, "InvalidArgument"),
    "multipart without a file": ("multipart/form-data; boundary=b",
                                 b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n',
                                 400, "EmptyBody"),
}


@pytest.fixture(scope="module")
def connection(gateway: str) -> Iterator[socket.socket]:
    """One keep-alive connection for the whole module: any case that closed it fails the next."""
    parts = urlsplit(gateway)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    yield sock
    sock.close()


def exchange(sock: socket.socket, method: str, path: str, ctype: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: {ctype}\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection without answering"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection in the middle of its answer"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_4xx_json_error_and_the_connection_stays(connection: socket.socket, endpoint: str,
                                                               case: str) -> None:
    ctype, body, status, kind = CASES[case]
    got, headers, answer = exchange(connection, "POST", endpoint, ctype, body)
    assert got == status, answer[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(answer)["error"]
    assert error["type"] == kind and error["message"]
    assert headers.get("connection") != "close"
    health, _, _ = exchange(connection, "GET", "/healthz", "text/plain", b"")
    assert health == 200


def _tiff_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="TIFF", tiffinfo={0x0112: orientation})
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_a_rotated_tiff_reports_the_size_the_annotated_image_has(connection: socket.socket,
                                                                orientation: int) -> None:
    stored = photo("coffee")  # 600 x 400 as stored; every orientation 5-8 stands it upright as 400 x 600
    data = _tiff_with_orientation(stored, orientation)
    status, _, answer = exchange(connection, "POST", "/v1/detect", "image/tiff", data)
    assert status == 200, answer[:300]
    size = json.loads(answer)["image"]
    status, _, png = exchange(connection, "POST", "/v1/detect?annotated=true", "image/tiff", data)
    assert status == 200
    drawn = Image.open(io.BytesIO(png)).size
    assert (size["width"], size["height"]) == drawn == (400, 600)
