"""The one-file multipart fast path takes exactly what the general parser would, or steps aside.

Bodies come from the real clients callers use (httpx, aiohttp, a curl-style hand-written body);
each answer is compared with Starlette's own multipart parser on the same bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from visiongate.service.api.images import IMAGE_FIELDS
from visiongate.service.api.multipart import single_file
from visiongate.service.app import create_app
from visiongate.service.settings import Settings

# bytes that look like multipart syntax inside the file must not end the part early
PAYLOAD = b"\xff\xd8\xff\xe0 jpeg-ish \r\n--not-the-boundary\r\n\r\n more \xff\xd9"


def httpx_body(files: list[tuple[str, tuple[str, bytes, str]]]) -> tuple[str, bytes]:
    req = httpx.Request("POST", "http://gateway/v1/classify", files=files)
    return req.headers["content-type"], req.read()


def aiohttp_body(name: str, data: bytes) -> tuple[str, bytes]:
    async def build() -> tuple[str, bytes]:
        form = aiohttp.FormData()
        form.add_field(name, data, filename="photo.jpg", content_type="image/jpeg")
        payload = form()
        chunks: list[bytes] = []

        class Sink:
            async def write(self, chunk: bytes) -> None:
                chunks.append(bytes(chunk))

        await payload.write(Sink())  # type: ignore[arg-type]
        return payload.content_type, b"".join(chunks)

    return asyncio.run(build())


def starlette_files(content_type: str, body: bytes) -> list[bytes]:
    """What the general parser finds in the image fields."""
    async def parse() -> list[bytes]:
        sent = False

        async def receive() -> dict[str, object]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                 "headers": [(b"content-type", content_type.encode())]}
        form = await Request(scope, receive).form()  # type: ignore[arg-type]
        try:
            return [await v.read() for k, v in form.multi_items() if k in IMAGE_FIELDS and not isinstance(v, str)]
        finally:
            await form.close()

    return asyncio.run(parse())


@pytest.mark.parametrize("content_type, body", [
    httpx_body([("file", ("photo.jpg", PAYLOAD, "image/jpeg"))]),
    aiohttp_body("file", PAYLOAD),
    aiohttp_body("image", PAYLOAD),
    ('multipart/form-data; boundary="quoted:boundary"',
     b'--quoted:boundary\r\nContent-Disposition: form-data; name="file"; filename="a; name=x.jpg"\r\n'
     b"\r\n" + PAYLOAD + b"\r\n--quoted:boundary--\r\n"),
], ids=["httpx", "aiohttp", "aiohttp-image-field", "curl-quoted-boundary"])
def test_one_file_is_taken_whole_and_equals_the_general_parser(content_type: str, body: bytes) -> None:
    assert single_file(body, content_type, IMAGE_FIELDS) == PAYLOAD
    assert starlette_files(content_type, body) == [PAYLOAD]


@pytest.mark.parametrize("why, content_type, body", [
    ("two files", *httpx_body([("file", ("a.jpg", b"one", "image/jpeg")), ("file", ("b.jpg", b"two", "image/jpeg"))])),
    ("another field name", *aiohttp_body("upload", PAYLOAD)),
    ("no boundary", "multipart/form-data", b"--x\r\n\r\n\r\n--x--"),
    ("a transfer encoding", "multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="file"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--'),
    ("no closing delimiter", "multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + PAYLOAD),
    ("headers never end", "multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="file"'),
    ("not form-data", "multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: attachment; name="file"\r\n\r\nx\r\n--b--'),
])
def test_anything_but_one_plain_file_goes_to_the_general_parser(why: str, content_type: str, body: bytes) -> None:
    assert single_file(body, content_type, IMAGE_FIELDS) is None, why


PREAMBLE = b"This is the preamble.  It is to be ignored, though it\r\nis a handy place for mail composers.\r\n"


def test_an_rfc_2046_preamble_is_ignored_by_the_fast_path() -> None:
    content_type, body = httpx_body([("file", ("photo.jpg", PAYLOAD, "image/jpeg"))])
    assert single_file(PREAMBLE + body + b"an epilogue, ignored too\r\n", content_type, IMAGE_FIELDS) == PAYLOAD


def test_a_preamble_is_ignored_by_the_gateway_for_one_file_and_for_several(
        repository: Path, chelsea_jpeg: bytes, coffee_jpeg: bytes) -> None:
    one_type, one = httpx_body([("file", ("b.jpg", coffee_jpeg, "image/jpeg"))])
    two_type, two = httpx_body([("file", ("a.jpg", chelsea_jpeg, "image/jpeg")),
                                ("file", ("b.jpg", coffee_jpeg, "image/jpeg"))])
    with TestClient(create_app(Settings(repository=repository, inference_workers=1))) as client:
        single = client.post("/v1/classify", content=PREAMBLE + one, headers={"content-type": one_type})
        several = client.post("/v1/classify", content=PREAMBLE + two, headers={"content-type": two_type})
    assert single.status_code == 200, single.text
    assert single.json()["predictions"][0]["label"] == "espresso"
    assert several.status_code == 200, several.text
    assert [r["predictions"][0]["label"] for r in several.json()][1] == "espresso"
