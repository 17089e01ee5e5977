"""Protocol-neutral answers of the OIP extensions (repository index, statistics), as Triton
writes them in JSON; the REST routes return them as they are and gRPC fills its messages from them."""

from __future__ import annotations

from typing import Any

from .backends.base import Backend, Duration, ModelStats


def _duration(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


def stats_json(stats: list[ModelStats]) -> dict[str, Any]:
    """The statistics extension's ``{"model_stats": [...]}``."""
    out = []
    for s in stats:
        out.append({
            "name": s.name, "version": str(s.version), "last_inference": s.last_inference_ms,
            "inference_count": s.inference_count, "execution_count": s.execution_count,
            "inference_stats": {
                "success": _duration(s.success), "fail": _duration(s.fail), "queue": _duration(s.queue),
                "compute_input": _duration(s.compute_input), "compute_infer": _duration(s.compute_infer),
                "compute_output": _duration(s.compute_output), "cache_hit": _duration(Duration()),
                "cache_miss": _duration(Duration()),
            },
            "batch_stats": [{"batch_size": size, "compute_input": _duration(ci), "compute_infer": _duration(cf),
                             "compute_output": _duration(co)} for size, (ci, cf, co) in sorted(s.batches.items())],
        })
    return {"model_stats": out}


def repository_index(backend: Backend, ready_only: bool = False) -> list[dict[str, str]]:
    """Every model (one entry per ready version), with its state and, when not ready, the reason."""
    entries: list[dict[str, str]] = []
    specs = {m.name: m for m in backend.models()}
    for status in backend.states():
        spec = specs.get(status.name)
        if spec is not None and status.state == "READY":
            entries.extend({"name": status.name, "version": str(v), "state": "READY", "reason": ""}
                           for v in spec.versions)
        elif not ready_only:
            entries.append({"name": status.name, "version": "", "state": str(status.state),
                            "reason": status.reason})
    return entries
