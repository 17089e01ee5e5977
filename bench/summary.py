"""The harness's tables and target ratios, from the rows bench/compare.py measured (or a results file).

Per pipeline: the gateway's rows beside that pipeline's peers (medians over rounds; the img/s range
when there are several), the in-process ceiling of that pipeline, the ratios at each concurrency,
and the targets with PASS/FAIL:
  highest concurrency: visiongate img/s >= 1.3x the best peer's and >= 0.9x the ceiling;
                       visiongate p99 <= 0.8x that peer's p99; zero errors
  lowest concurrency:  visiongate p50 <= 15 ms
``perf_analyzer-tensor`` (random tensors, no decode) is shown but never counts as the best peer.

usage: python bench/summary.py RESULTS.jsonl      (what ``compare.py --json`` wrote)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import table

GATEWAY = ("visiongate", "visiongate-raw")
ORDER = [*GATEWAY, "fastapi", "litserve", "bentoml", "triton-jpeg", "triton-tensor", "perf_analyzer-tensor"]
SERVER_OF = {
    "visiongate-raw": "visiongate",
    "triton-jpeg": "triton",
    "triton-tensor": "triton",
    "perf_analyzer-tensor": "triton",
}
NOT_A_PEER = (*GATEWAY, "perf_analyzer-tensor")
NOTES = {
    "visiongate": "the gateway, embedded onnxruntime, multipart upload (same in both pipelines)",
    "visiongate-raw": "the gateway, raw image/jpeg body",
    "fastapi": "FastAPI + onnxruntime, 1 image per request",
    "litserve": "LitServe, batch <= 8, 5 ms",
    "bentoml": "BentoML, 1 worker, no batching",
    "triton-jpeg": "Triton python backend taking JPEG bytes, batch <= 8, 5 ms",
    "triton-tensor": "Triton, the client decodes and sends the graph's input (timed), batch <= 8, 5 ms",
    "perf_analyzer-tensor": "perf_analyzer on the tensor model: random tensors, no decode",
}
Row = dict[str, object]


def _f(r: Row, k: str) -> float:
    return float(r[k])  # type: ignore[arg-type]


def merge(rows: Sequence[Row]) -> list[Row]:
    """Median over rounds per (label, pipeline, concurrency); errors summed; calib per server block."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    calib: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r.get("label") == "calib":
            calib.setdefault((str(r["server"]), str(r["pipeline"])), []).append(_f(r, "calib_img_s"))
        elif "concurrency" in r and not r.get("retried"):
            groups.setdefault((str(r["label"]), str(r["pipeline"]), int(r["concurrency"])), []).append(r)  # type: ignore[call-overload]
    out = []
    for (label, pipeline, c), rs in groups.items():
        m: Row = {"label": label, "pipeline": pipeline, "concurrency": c}
        for k in ("img_s", "p50_ms", "p99_ms", "server_cores", "client_cores", "foreign_pct"):
            vals = [_f(r, k) for r in rs if r.get(k) is not None]
            m[k] = round(median(vals), 2) if vals else None
        m["errors"] = sum(int(r["errors"]) for r in rs)  # type: ignore[call-overload]
        cores, rate = m["server_cores"], _f(m, "img_s")
        m["cpu_ms_img"] = round(float(cores) * 1000 / rate, 2) if cores is not None and rate > 0 else None  # type: ignore[arg-type]
        if len(rs) > 1:
            m["img_s_range"] = f"{min(_f(r, 'img_s') for r in rs):g}-{max(_f(r, 'img_s') for r in rs):g}"
        cal = calib.get((SERVER_OF.get(label, label), pipeline))
        m["calib_img_s"] = round(median(cal), 1) if cal else None
        out.append(m)
    out.sort(key=lambda r: (ORDER.index(str(r["label"])) if r["label"] in ORDER else 99, r["concurrency"]))
    return out


def ratios(rows: Sequence[Row], ceiling: Row | None) -> list[str]:
    """At each concurrency: visiongate against the best peer and the ceiling; then the targets."""
    at = {(r["label"], r["concurrency"]): r for r in rows}
    concs = sorted(int(r["concurrency"]) for r in rows if r["label"] == "visiongate")  # type: ignore[call-overload]
    if not concs:
        return ["visiongate was not measured"]
    ceil = _f(ceiling, "ceiling_img_s") if ceiling else None
    lines = []
    best_at: dict[int, Row] = {}
    for c in concs:
        vg = at[("visiongate", c)]
        line = f"- c={c}: visiongate {vg['img_s']} img/s, p50 {vg['p50_ms']} ms, p99 {vg['p99_ms']} ms"
        peers = [
            r for r in rows if r["concurrency"] == c and r["label"] not in NOT_A_PEER and _f(r, "img_s") > 0
        ]
        if peers:
            best = best_at[c] = max(peers, key=lambda r: _f(r, "img_s"))
            low = min(peers, key=lambda r: _f(r, "p50_ms"))
            line += (
                f"; {_f(vg, 'img_s') / _f(best, 'img_s'):.2f}x the best peer "
                f"({best['label']} {best['img_s']} img/s), "
                f"p99 {_f(vg, 'p99_ms') / _f(best, 'p99_ms'):.2f}x its p99 ({best['p99_ms']} ms); "
                f"lowest peer p50 {low['p50_ms']} ms ({low['label']})"
            )
        if ceil:
            line += f"; {_f(vg, 'img_s') / ceil:.2f}x the in-process ceiling ({ceil:g})"
        lines.append(line)
    hi, lo = concs[-1], concs[0]
    vg, vg1 = at[("visiongate", hi)], at[("visiongate", lo)]

    def ok(b: bool) -> str:
        return "PASS" if b else "FAIL"

    lines.append("targets:")
    if hi in best_at:
        best = best_at[hi]
        r_ips, r_p99 = _f(vg, "img_s") / _f(best, "img_s"), _f(vg, "p99_ms") / _f(best, "p99_ms")
        lines.append(
            f"- c={hi}: img/s {r_ips:.2f}x the best peer ({best['label']}); "
            f"target >= 1.3x: {ok(r_ips >= 1.3)}"
        )
        lines.append(f"- c={hi}: p99 {r_p99:.2f}x {best['label']}'s; target <= 0.8x: {ok(r_p99 <= 0.8)}")
    if ceil:
        r_c = _f(vg, "img_s") / ceil
        lines.append(f"- c={hi}: {r_c:.2f}x the in-process ceiling; target >= 0.9x: {ok(r_c >= 0.9)}")
    errs = sum(int(r["errors"]) for r in rows if r["label"] == "visiongate")  # type: ignore[call-overload]
    lines.append(f"- visiongate errors at every concurrency: {errs}; target 0: {ok(errs == 0)}")
    lines.append(
        f"- c={lo}: visiongate p50 {vg1['p50_ms']} ms; target <= 15 ms: {ok(_f(vg1, 'p50_ms') <= 15)}"
    )
    return lines


def report(rows: Sequence[Row]) -> str:
    """Everything printed at the end of a run, one section per pipeline measured."""
    measured = merge(rows)
    ceilings = {str(r["pipeline"]): r for r in rows if r.get("label") == "ceiling"}
    pipelines = [p for p in ("reference", "visiongate") if any(r["pipeline"] == p for r in measured)]
    pipelines = pipelines or sorted(ceilings)
    multi = any("img_s_range" in r for r in measured)
    cols = [
        ("label", "server"),
        ("concurrency", "conc"),
        ("img_s", "img/s"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("errors", "errors"),
        ("cpu_ms_img", "server CPU ms/img"),
        ("server_cores", "server cores"),
        ("client_cores", "client cores"),
        ("foreign_pct", "foreign %"),
        ("calib_img_s", "calib img/s"),
    ]
    if multi:
        cols.insert(3, ("img_s_range", "img/s range"))
    out = []
    for p in pipelines:
        section = [r for r in measured if r["pipeline"] in (p, "gateway")]
        out.append(f"## pipeline: {p}\n")
        out.append(table(section, cols))
        out.append("")
        out += [f"- {k}: {v}" for k, v in NOTES.items() if any(r["label"] == k for r in section)]
        c = ceilings.get(p)
        if c:
            out.append(
                f"\nin-process ceiling ({p} pipeline): {c['ceiling_img_s']} img/s ({c['ceiling_case']}; "
                f"cases {c['cases']}; foreign % up to {c['foreign_pct_max']})"
            )
        out.append("")
        out += ratios(section, c)
        out.append("")
    foreign = max((_f(r, "foreign_pct") for r in measured if r.get("foreign_pct") is not None), default=0.0)
    if foreign > 10:
        out.append(
            f"warning: other processes took up to {foreign:.0f}% of the machine during this run; img/s "
            "and latency are depressed and noisy (ratios measured side by side still mean something)"
        )
    versions = next((r for r in rows if r.get("label") == "versions"), None)
    if versions:
        out.append(
            "versions: " + json.dumps({k: v for k, v in versions.items() if k not in ("label", "round")})
        )
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(report([json.loads(line) for line in f if line.strip()]))
