"""Reading a byte stream with a size limit, refusing as soon as it is passed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import BodyTooLarge


async def read_limited(chunks: AsyncIterator[bytes], limit: int, declared: str | None, what: str) -> bytes:
    """All of ``chunks``, or ``BodyTooLarge`` the moment they pass ``limit`` bytes.

    ``declared``: a Content-Length header, refused up front when it already says too much (a
    chunked upload without one is still cut off while it streams). ``what`` names the thing in the
    error message, e.g. "the body".
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"{what} is {declared} bytes; the limit is {limit}", limit=limit)
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"{what} is over the limit of {limit} bytes", limit=limit)
        parts.append(chunk)
    return b"".join(parts)
