"""Print the anchor table (markdown) from a results folder written by run_all.sh.
With several rounds: median over rounds; img/s shows [min-max] too.
usage: python summarize.py RESULTS_DIR"""
import json, os, sys
from statistics import median

ORDER = ["visiongate", "fastapi", "litserve", "bentoml", "triton-tensor", "triton-jpeg", "perf_analyzer-tensor"]
SERVER = {"triton-tensor": "triton", "triton-jpeg": "triton", "perf_analyzer-tensor": "triton"}
NOTE = {"visiongate": "visiongate gateway, embedded onnxruntime, multipart JPEG (model_repository/)",
        "fastapi": "B: FastAPI+ORT, 1 img/request, multipart JPEG",
        "litserve": "C: LitServe, batch<=8, 5 ms, multipart JPEG",
        "bentoml": "D: BentoML 1 worker, no batching, multipart JPEG",
        "triton-tensor": "A: Triton gRPC FP32, client decodes (timed)",
        "triton-jpeg": "A: Triton gRPC JPEG bytes, model.py decodes",
        "perf_analyzer-tensor": "A: perf_analyzer, random FP32, no decode"}


def fmt(v):
    return "–" if v is None else (round(v, 2) if isinstance(v, float) else v)


def main(d):
    groups, checks, calib, calib_flag = {}, {}, {}, set()
    with open(os.path.join(d, "results.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("label") == "calib":  # ⚠: other processes took > 10 % of the machine meanwhile
                v = r["calib_img_s"]
                calib.setdefault(r["server"], []).append(v)
                if r.get("calib_foreign_pct", 0) > 10:
                    calib_flag.add(f"{r['server']} {v}")
            elif "concurrency" in r and not r.get("retry"):
                groups.setdefault((r["label"], r["concurrency"]), []).append(r)
            elif "chelsea_top1" in r or "check_error" in r:
                checks[r["label"]] = r.get("chelsea_top1", "ERR")
    keys = sorted(groups, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[1]))
    rounds = max((len(v) for v in groups.values()), default=1)
    print(f"| server | conc | img/s{' [range]' if rounds > 1 else ''} | p50 ms | p99 ms | errors | "
          "server cores | client cores | foreign % | calib img/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        rs = groups[k]
        med = lambda f: median([r[f] for r in rs]) if all(r.get(f) is not None for r in rs) else None
        ips = [r["img_s"] for r in rs]
        rng = f" [{min(ips)}-{max(ips)}]" if len(rs) > 1 else ""
        fmax = max((r.get("foreign_pct") or 0) for r in rs) if any("foreign_pct" in r for r in rs) else None
        cal = calib.get(SERVER.get(k[0], k[0]))
        print(f"| {k[0]} | {k[1]} | {fmt(med('img_s'))}{rng} | {fmt(med('p50_ms'))} | {fmt(med('p99_ms'))} | "
              f"{sum(r['errors'] for r in rs)} | {fmt(med('server_cores'))} | {fmt(med('client_cores'))} | "
              f"{fmt(fmax)}{' ⚠' if (fmax or 0) > 10 else ''} | {fmt(median(cal)) if cal else '–'} |")
    print()
    for k in ORDER:
        if any(g[0] == k for g in groups):
            print(f"- {k}: {NOTE[k]}" + (f"; chelsea top-1 = {checks[k]}" if k in checks else ""))
    if calib:
        print("- calib = in-process decode+ORT b1 img/s measured just before that server's block "
              "(host speed drifts): " + ", ".join(f"{s} {v}" for s, v in calib.items())
              + (f"; taken under other load ⚠: {', '.join(sorted(calib_flag))}" if calib_flag else ""))
    c = os.path.join(d, "ceiling.json")
    if os.path.exists(c):
        j = json.load(open(c))
        print(f"\nin-process ceiling: {j.get('ceiling_img_s')} img/s ({j.get('ceiling_case')}); all cases: "
              + json.dumps({k: v for k, v in j.items() if k not in ('ceiling_img_s', 'ceiling_case')}))
    print_targets(groups, c)
    v = os.path.join(d, "versions.json")
    if os.path.exists(v):
        print("\nversions:", open(v).read().strip())


def print_targets(groups, ceiling_file):
    """Issue 10's ratios for visiongate, from the medians above: against the best peer at each
    concurrency, and against the in-process ceiling of this same run."""
    def med(label, conc, field):
        rs = groups.get((label, conc), [])
        vals = [r[field] for r in rs if r.get(field) is not None]
        return median(vals) if vals else None
    concs = sorted({c for (label, c) in groups if label == "visiongate"})
    if not concs:
        return
    print("\ntargets (visiongate):")
    for c in concs:
        peers = [(med(k, c, "img_s"), k) for k in ORDER[1:] if k != "perf_analyzer-tensor" and med(k, c, "img_s")]
        vg, vg99, vg50 = med("visiongate", c, "img_s"), med("visiongate", c, "p99_ms"), med("visiongate", c, "p50_ms")
        line = f"- c={c}: {fmt(vg)} img/s, p50 {fmt(vg50)} ms, p99 {fmt(vg99)} ms"
        if peers and vg:
            best, name = max(peers)
            p99 = med(name, c, "p99_ms")
            line += f"; {vg / best:.2f}x the best peer ({name} {fmt(best)} img/s)"
            if p99 and vg99:
                line += f", p99 {vg99 / p99:.2f}x its p99 ({fmt(p99)} ms)"
            fastest50 = min((med(k, c, "p50_ms"), k) for _, k in peers if med(k, c, "p50_ms"))
            line += f"; lowest peer p50 {fmt(fastest50[0])} ms ({fastest50[1]})"
        if os.path.exists(ceiling_file) and vg:
            ceil = json.load(open(ceiling_file)).get("ceiling_img_s")
            if ceil:
                line += f"; {vg / ceil:.2f}x the in-process ceiling ({ceil})"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
