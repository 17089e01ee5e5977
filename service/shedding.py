"""Refusing a request for an overloaded model before its body is read.

Under a flood most requests are refused. Refused after the body is read and routed, each costs the
event loop ~0.4 ms; at 10x load on 2 cores that alone kept the loop busy enough to fall behind,
and then even refusals came back seconds late. Here the admission middleware names the model a
request is for from its path and query string alone, and asks the backend whether that model's
queue would refuse it right now: the same estimate the queue applies later, so the answer only
comes earlier. Requests whose model cannot be told this way (a JSON body naming it, an unknown
path) are left to the normal path.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.types import Scope

from .errors import Overloaded, VisionGateError

#: REST paths and the task whose default model serves them when no ?model= is given
_TASK_PATHS = {"/v1/classify": "classify", "/v1/detect": "detect", "/v1/super-resolve": "super_resolve"}


def model_of(scope: Scope, service: Any) -> str | None:
    """The model a request is for, from its path and query string; None when that needs more."""
    path: str = scope["path"]
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path.split("/")  # /v2/models/{name}[/versions/{v}]/infer
        return parts[3] if len(parts) in (5, 7) else None
    task = _TASK_PATHS.get(path)
    if task is None:
        return None
    query = scope.get("query_string", b"")
    if b"model=" in query:
        names = parse_qs(query.decode("latin-1")).get("model")
        if names:
            return names[0]
    try:
        return str(service.default_model(task))
    except VisionGateError:
        return None


def early_refusal(scope: Scope) -> Overloaded | None:
    """``Overloaded`` when the request's model would refuse it now (before its body is read)."""
    app = scope.get("app")
    service = getattr(getattr(app, "state", None), "service", None)
    refusal = getattr(getattr(service, "backend", None), "refusal", None)
    if refusal is None:  # a backend without its own queue (Triton) refuses on the normal path
        return None
    model = model_of(scope, service)
    return None if model is None else refusal(model)
