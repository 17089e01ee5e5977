"""Which routes run models: marked where they are declared, read by admission.

``@inference_route("classify")`` on a task endpoint (its model comes from ``?model=`` or the
task's default) or ``@inference_route()`` on an OIP endpoint whose path names the model. Admission
finds a request's route with the application's own router, so renaming or adding a route can
never leave early shedding working on a stale copy of the paths.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

F = TypeVar("F", bound=Callable[..., Any])

_MARKED: dict[Callable[..., Any], str | None] = {}


def inference_route(task: str | None = None) -> Callable[[F], F]:
    """Mark an endpoint as one that runs a model (``task``: whose default model serves it)."""

    def mark(endpoint: F) -> F:
        _MARKED[endpoint] = task
        return endpoint

    return mark


@dataclass(frozen=True)
class InferenceTarget:
    """What admission knows of a request before reading its body."""

    task: str | None  # the task whose default model serves it when no model is named
    model: str | None  # named in the path or query string
    version: int | None


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes themselves, through included routers (FastAPI >= 0.165 keeps an included router
    as one object holding the original; this app includes its routers without a prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


class RouteTable:
    """Finds the inference route of a request (cached per method and path, bounded)."""

    def __init__(self, routes: Callable[[], Iterable[BaseRoute]], cache_size: int = 4096) -> None:
        self._routes = routes
        self._cache: OrderedDict[tuple[str, str], tuple[str | None, dict[str, Any]] | None] = OrderedDict()
        self._cache_size = cache_size

    def _match(self, scope: Scope) -> tuple[str | None, dict[str, Any]] | None:
        for route in _flatten(self._routes()):
            match, child = route.matches(scope)
            if match == Match.FULL:
                endpoint = getattr(route, "endpoint", None)
                if endpoint is None or endpoint not in _MARKED:
                    return None
                return _MARKED[endpoint], dict(child.get("path_params", {}))
        return None

    def target(self, scope: Scope) -> InferenceTarget | None:
        """The request's target if its route runs a model, else None."""
        key = (scope.get("method", ""), scope["path"])
        if key in self._cache:
            found = self._cache[key]
            self._cache.move_to_end(key)
        else:
            found = self._match(scope)
            self._cache[key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if found is None:
            return None
        task, params = found
        model = params.get("model")
        version = params.get("version")
        if model is None:
            query: bytes = scope.get("query_string", b"")
            if b"model=" in query:
                names = parse_qs(query.decode("latin-1")).get("model")
                model = names[0] if names else None
        return InferenceTarget(task, model, int(version) if isinstance(version, int | str) and
                               str(version).isdigit() else None)
