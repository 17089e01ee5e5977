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
import json
from typing import Any, TypeVar

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from ..errors import BodyTooLarge, EmptyBody, InvalidArgument, InvalidImage, UnsupportedMediaType
from ..settings import Settings
from .streams import read_limited
from .fetch import fetch_image
from .multipart import single_file

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

#: OpenAPI description of the request body every image endpoint accepts
IMAGE_REQUEST_BODY = {
    "required": True,
    "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {
            "schema": {
                "type": "object",
                "description": "exactly one of the keys",
                "properties": {
                    "image": {"type": "string", "format": "byte", "description": "base64 (data: URL allowed)"},
                    "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                    "url": {"type": "string", "format": "uri",
                            "description": "fetched only from hosts on the gateway's allowlist"},
                    "urls": {"type": "array", "items": {"type": "string", "format": "uri"}},
                },
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "the image; repeat the field for several"}},
                "required": ["file"],
            }
        },
    },
}


async def read_body(request: Request, limit: int) -> bytes:
    return await read_limited(request.stream(), limit, request.headers.get("content-length"), "the body")


async def _multipart_images(request: Request, body: bytes, settings: Settings) -> list[bytes]:
    one = single_file(body, request.headers.get("content-type", ""), IMAGE_FIELDS)
    if one is not None:
        return [one]
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
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the JSON body cannot be parsed: {exc}") from exc
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
