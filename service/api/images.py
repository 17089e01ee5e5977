"""Getting image bytes out of a request, size-limited, in every form callers send them.

* a raw ``image/*`` (or ``application/octet-stream``) body: one image;
* ``multipart/form-data``: one file per ``file`` field (repeat it for several);
* ``application/json``: ``{"image": "<base64>"}``, ``{"images": ["<base64>", ...]}``,
  ``{"url": "https://..."}`` or ``{"urls": [...]}`` (URLs only where the allowlist permits, see
  ``fetch.py``). Base64 may carry a ``data:image/...;base64,`` prefix (what browsers produce).

The body is read as a stream and refused as soon as it passes ``max_body_bytes`` (a chunked
upload cannot slip past a Content-Length check). ``request_images`` returns an ``ImageList``
that remembers whether the caller asked for several images, so routers answer with a list exactly
then (``one_or_many``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeVar

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from ..errors import BodyTooLarge, EmptyBody, InvalidArgument, InvalidImage, UnsupportedMediaType
from ..settings import Settings
from .fetch import fetch_image
from .json_body import load_json
from .multipart import single_file, without_preamble
from .streams import read_limited

T = TypeVar("T")


class ImageList(list[bytes]):
    """The images of one request, in order; ``as_list``: the caller sent a list, answer with a list."""

    def __init__(self, images: list[bytes], as_list: bool) -> None:
        super().__init__(images)
        self.as_list = as_list


def one_or_many(images: list[bytes], results: list[T]) -> T | list[T]:
    """A list of results when the request held a list of images, else the one result."""
    return results if getattr(images, "as_list", len(results) > 1) else results[0]

#: multipart field names taken as images (several images: repeat the field)
IMAGE_FIELDS = ("file", "files", "image", "images")
RAW_TYPES = ("image/", "application/octet-stream")

_BASE64 = {"type": "string", "format": "byte", "description": "base64 (a data: URL allowed)"}
_URL = {"type": "string", "format": "uri", "description": "fetched only from hosts on the gateway's allowlist"}
_BINARY = {"type": "string", "format": "binary"}


def _one_key(key: str, schema: Mapping[str, object]) -> dict[str, object]:
    return {"type": "object", "title": key, "required": [key], "properties": {key: schema}}


#: OpenAPI description of the request body every image endpoint accepts; the limits that depend on
#: settings (list lengths, body size) are filled in by ``schemas.document_limits``
IMAGE_REQUEST_BODY = {
    "required": True,
    "content": {
        "image/jpeg": {"schema": _BINARY},
        "image/png": {"schema": _BINARY},
        "application/octet-stream": {"schema": _BINARY},
        "application/json": {
            "schema": {
                "description": "exactly one of the keys image, images, url, urls",
                "oneOf": [
                    _one_key("image", _BASE64),
                    _one_key("images", {"type": "array", "items": _BASE64, "minItems": 1}),
                    _one_key("url", _URL),
                    _one_key("urls", {"type": "array", "items": _URL, "minItems": 1}),
                ],
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {**_BINARY, "description": "the image; repeat the field for several"}},
                "required": ["file"],
            }
        },
    },
}


async def read_body(request: Request, limit: int) -> bytes:
    return await read_limited(request.stream(), limit, request.headers.get("content-length"), "the body")


async def _multipart_images(request: Request, body: bytes, settings: Settings) -> list[bytes]:
    content_type = request.headers.get("content-type", "")
    one = single_file(body, content_type, IMAGE_FIELDS)
    if one is not None:
        return [one]
    body = without_preamble(body, content_type)
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        form = await replay.form(max_files=settings.max_images_per_request, max_part_size=settings.max_body_bytes)
    except Exception as exc:  # starlette raises its own HTTPException/MultiPartException types
        raise InvalidArgument(f"the multipart body could not be read: {getattr(exc, 'detail', exc)}") from exc
    images: list[bytes] = []
    try:
        for key, value in form.multi_items():
            if key in IMAGE_FIELDS and isinstance(value, UploadFile):
                images.append(await value.read())
    finally:
        await form.close()
    if not images:
        raise EmptyBody("the multipart body has no image file; send it in a field named 'file'")
    return images


def _b64(text: Any, where: str, limit: int) -> bytes:
    if not isinstance(text, str):
        raise InvalidArgument(f"{where} must be a base64 string")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidImage(f"{where} is a data: URL without ';base64,'")
    text = "".join(text.split())  # line-wrapped base64 is common
    if len(text) * 3 // 4 > limit:  # before decoding: never allocate past the limit
        raise BodyTooLarge(f"{where} decodes to about {len(text) * 3 // 4} bytes; the limit is {limit}",
                           limit=limit)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{where} is not valid base64: {exc}") from exc


async def _json_images(body: bytes, settings: Settings) -> ImageList:
    doc = load_json(body, settings.max_json_depth)
    keys = sorted(set(doc) & {"image", "images", "url", "urls"}) if isinstance(doc, dict) else []
    if len(keys) != 1:
        raise InvalidArgument('the JSON body needs exactly one of "image", "images" (base64) or '
                              '"url", "urls"' + (f"; got {keys}" if keys else ""))
    key = keys[0]
    value = doc[key]
    many = key in ("images", "urls")
    items = value if many else [value]
    if many and (not isinstance(value, list) or not value):
        raise InvalidArgument(f'"{key}" must be a non-empty list')
    if len(items) > settings.max_images_per_request:
        raise InvalidArgument(f"{len(items)} images in one request; the limit is "
                              f"{settings.max_images_per_request}")
    limit = settings.max_body_bytes
    if key in ("image", "images"):
        images = [_b64(v, f"{key}[{i}]" if many else key, limit) for i, v in enumerate(items)]
    else:
        for i, v in enumerate(items):
            if not isinstance(v, str):
                raise InvalidArgument(f"{key}[{i}] must be a string" if many else f"{key} must be a string")
        images = list(await asyncio.gather(*(fetch_image(v, settings) for v in items)))
    return ImageList(images, as_list=many)


async def request_images(request: Request, settings: Settings) -> ImageList:
    """Every image in the request, as bytes, in order."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, settings.max_body_bytes)
    if not body:
        raise EmptyBody("the request has no body; send an image (raw image/* body, multipart 'file', "
                        "or JSON with base64 'image')")
    if content_type == "multipart/form-data":
        files = await _multipart_images(request, body, settings)
        images = ImageList(files, as_list=len(files) > 1)
    elif content_type == "application/json" or content_type.endswith("+json"):
        images = await _json_images(body, settings)
    elif content_type.startswith(RAW_TYPES) or content_type == "":
        images = ImageList([body], as_list=False)
    else:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not accepted; send image/* bytes, multipart/form-data "
            "or application/json",
            accepted=["image/*", "application/octet-stream", "multipart/form-data", "application/json"],
        )
    if len(images) > settings.max_images_per_request:
        raise InvalidArgument(f"{len(images)} images in one request; the limit is "
                              f"{settings.max_images_per_request}")
    for i, data in enumerate(images):
        if not data:
            raise EmptyBody(f"image {i} is empty")
    return images
