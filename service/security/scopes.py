"""Which scope each route needs: the one table, read by the auth middleware and checked against the app.

Rules are tried in order on the request's method and raw path (the middleware runs before routing);
the first match wins. A path no rule names needs ``admin``: a route added without a rule here is
closed, not open, and ``route_scopes(app)`` (used by the tests and the startup log) shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

OPEN = "open"  # no key needed: probes, the static playground and docs shells
INFER, READ, ADMIN, METRICS = "infer", "read", "admin", "metrics"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    scope: str
    methods: frozenset[str] | None = None  # None = any method
    why: str = ""


def _rule(pattern: str, scope: str, methods: frozenset[str] | None = None, why: str = "") -> Rule:
    return Rule(re.compile(pattern), scope, methods, why)


RULES: tuple[Rule, ...] = (
    _rule(r"^/(healthz|readyz)$", OPEN, why="orchestrator probes carry no key"),
    _rule(r"^/v2/health/(live|ready)$", OPEN, why="the OIP's own probes"),
    _rule(r"^/metrics$", METRICS),
    _rule(r"^/(docs|redoc|openapi\.json)(/.*)?$", OPEN,
          why="the schema is the same for every deployment and holds no models, keys or data"),
    _rule(r"^/(ui(/.*)?)?$", OPEN, READ_METHODS, why="static files; the page sends the key on its calls"),
    _rule(r"^/favicon\.ico$", OPEN, READ_METHODS),
    _rule(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$", INFER),
    _rule(r"^/v2/repository/models/[^/]+/(load|unload)$", ADMIN),
    _rule(r"^/v2/repository/index$", READ),
    _rule(r"^/v2(/.*)?$", READ, READ_METHODS, why="server and model metadata, config, readiness, stats"),
    _rule(r"^/v1/models(/.*)?$", READ, READ_METHODS),
    _rule(r"^/v1/(classify|detect|super-resolve|segment)(/.*)?$", INFER, frozenset({"POST"})),
    # the Open Inference Protocol over gRPC: the method's full name is the path (method "POST")
    _rule(r"^/inference\.GRPCInferenceService/(ServerLive|ServerReady)$", OPEN, why="probes"),
    _rule(r"^/inference\.GRPCInferenceService/(ModelInfer|ModelStreamInfer)$", INFER),
    _rule(r"^/inference\.GRPCInferenceService/(RepositoryModelLoad|RepositoryModelUnload)$", ADMIN),
    _rule(r"^/inference\.GRPCInferenceService/\w+$", READ),
)
DEFAULT_SCOPE = ADMIN


def rule_for(method: str, path: str) -> Rule | None:
    for rule in RULES:
        if (rule.methods is None or method in rule.methods) and rule.pattern.match(path):
            return rule
    return None


@lru_cache(maxsize=4096)  # bounded: a client inventing paths cannot grow it
def scope_for(method: str, path: str) -> str:
    """The scope a request needs: HTTP method and path, or ``("POST", "/<package.Service>/<Method>")``
    for a gRPC call."""
    rule = rule_for(method, path)
    return DEFAULT_SCOPE if rule is None else rule.scope


def _example_path(template: str) -> str:
    """A concrete path for a route template: ``/v2/models/{model}/infer`` -> ``/v2/models/x/infer``."""
    return re.sub(r"\{[^}:]+(:path)?\}", "x", template)


def route_scopes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, route template, scope) for every route the app serves, resolved by ``RULES``."""
    found: list[tuple[str, str, str]] = []
    for route in iter_route_contexts(app.routes):  # included routers flattened, as FastAPI routes them
        path = route.path or "?"
        if isinstance(route.original_route, Mount):
            found.append(("GET", path + "/", scope_for("GET", _example_path(path) + "/x")))
            continue
        for method in sorted(route.methods or {"GET"}):
            found.append((method, path, scope_for(method, _example_path(path))))
    return found


def unclassified_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, template) of the app's routes no rule names (they need ``admin`` until one does)."""
    return [(m, p) for m, p, _ in route_scopes(app)
            if m not in {"HEAD", "*"} and rule_for(m, _example_path(p)) is None]
