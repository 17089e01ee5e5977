"""JSON answers for the task endpoints, serialised once.

The routes declare their pydantic ``response_model`` (that is what OpenAPI documents); the body is
written here with pydantic's own JSON encoder, so FastAPI does not validate and re-encode the
result a second time on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Response
from pydantic import BaseModel

from .images import one_or_many


def json_result(images: list[bytes], results: Sequence[BaseModel]) -> Response:
    """One result for one image, a JSON list when the request held a list of images."""
    chosen = one_or_many(images, list(results))
    if isinstance(chosen, list):
        body = b"[" + b",".join(r.model_dump_json().encode() for r in chosen) + b"]"
    else:
        body = chosen.model_dump_json().encode()
    return Response(body, media_type="application/json")
