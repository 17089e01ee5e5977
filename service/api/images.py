"""Getting image bytes out of a request: raw ``image/*`` body or multipart upload, size-limited.

The body is read as a stream and refused as soon as it passes ``max_body_bytes`` (a chunked
upload cannot slip past a Content-Length check).
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from ..errors import BodyTooLarge, EmptyBody, InvalidArgument, UnsupportedMediaType
from ..settings import Settings

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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit}", limit=limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is over the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _multipart_images(request: Request, body: bytes, settings: Settings) -> list[bytes]:
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


async def request_images(request: Request, settings: Settings) -> list[bytes]:
    """Every image in the request, as bytes, in order."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, settings.max_body_bytes)
    if not body:
        raise EmptyBody("the request has no body; send an image (raw image/* body or multipart 'file')")
    if content_type == "multipart/form-data":
        images = await _multipart_images(request, body, settings)
    elif content_type.startswith(RAW_TYPES) or content_type == "":
        images = [body]
    else:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not accepted; send image/* bytes or multipart/form-data",
            accepted=["image/*", "application/octet-stream", "multipart/form-data"],
        )
    if len(images) > settings.max_images_per_request:
        raise InvalidArgument(f"{len(images)} images in one request; the limit is "
                              f"{settings.max_images_per_request}")
    for i, data in enumerate(images):
        if not data:
            raise EmptyBody(f"image {i} is empty")
    return images
