"""visiongate beside the peers and the in-process ceiling, in one run: EfficientNet-Lite0 classify.

For each server in turn (alone on the machine, loopback only): start it on a free port, check that
the chelsea photo comes back as a cat, load it closed-loop with the same 64 real JPEGs at each
concurrency, stop it. Then measure the in-process ceiling (bench/inprocess.py) and print the table,
the ratios the project's targets are stated in, and PASS/FAIL for each target:
  concurrency 32: visiongate img/s >= 1.3x the best peer's and >= 0.9x the ceiling;
                  visiongate p99 <= 0.8x that peer's p99; zero errors
  concurrency 1:  visiongate p50 <= 15 ms
Every server gets the same ONNX graph (visiongate's export, uint8 NHWC in, normalised inside) and
multipart uploads (what the peers accept); ``visiongate-raw`` also shows the raw image/jpeg body.
Client and servers share the machine's cores: img/s is noisy on a busy host (see "foreign %", the
CPU other processes took); "CPU ms/img" (the server's CPU time per image) is much steadier.

usage: python bench/compare.py [-s visiongate fastapi litserve bentoml triton] [-c 1 8 32] [-d 6]
                               [--rounds 1] [--json results.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (MODEL, NCPU, Server, chelsea_jpeg, client_session, closed_loop, http_sender,  # noqa: E402
                          load_images, log, start_gateway, table)
from bench.inprocess import ceiling, model_path  # noqa: E402
from bench.peers import launch  # noqa: E402

CAT_IDS = range(281, 286)
GATEWAY_CASES = ("visiongate", "visiongate-raw")


def triton_sender(addr: str):  # type: ignore[no-untyped-def]
    import numpy as np
    import tritonclient.grpc.aio as grpc_aio
    from tritonclient.grpc import InferInput, InferRequestedOutput

    client = grpc_aio.InferenceServerClient(addr)
    out = [InferRequestedOutput("LOGITS", class_count=5)]

    async def send(data: bytes) -> int:
        inp = InferInput("JPEG", [1, len(data)], "UINT8")
        inp.set_data_from_numpy(np.frombuffer(data, np.uint8)[None])
        r = await client.infer("effnet_jpeg", [inp], outputs=out, client_timeout=60)
        return int(r.as_numpy("LOGITS")[0][0].decode().split(":")[1])

    return send, client.close


async def load_server(case: str, server: Server, jpegs: list[bytes], concurrency: list[int],
                      duration_s: float) -> list[dict[str, object]]:
    session = None
    if case == "triton":
        send, close = triton_sender(server.base_url)
    else:
        session = client_session()
        path = f"/v1/classify?model={MODEL}" if case in GATEWAY_CASES else "/classify"
        send = http_sender(session, server.base_url + path, multipart=case != "visiongate-raw")
        close = session.close  # type: ignore[attr-defined]
    try:
        top1 = await send(chelsea_jpeg())
        if top1 not in CAT_IDS:
            raise RuntimeError(f"{case}: the chelsea photo came back as class {top1}, not a cat")
        return [(await closed_loop(case, send, jpegs, c, duration_s, server_pid=server.proc.pid)).row()
                for c in concurrency]
    finally:
        await close()


def start(case: str, model: Path) -> Server:
    if case in GATEWAY_CASES:
        return start_gateway(name=case)
    return launch.PEERS[case](model)


def run_case(case: str, model: Path, jpegs: list[bytes], concurrency: list[int],
             duration_s: float) -> list[dict[str, object]]:
    log(f"{case}: starting")
    t0 = time.monotonic()
    try:
        server = start(case, model)
    except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the others
        log(f"{case}: could not start: {exc}")
        return []
    try:
        log(f"{case}: ready in {time.monotonic() - t0:.1f} s; loading")
        return asyncio.run(load_server(case, server, jpegs, concurrency, duration_s))
    except Exception as exc:  # noqa: BLE001
        log(f"{case}: failed: {exc}\n{server.tail()}")
        return []
    finally:
        server.stop()


def cpu_ms(row: dict[str, object]) -> float | None:
    cores, rate = row.get("server_cores"), float(row["img_s"])  # type: ignore[arg-type]
    return round(float(cores) * 1000 / rate, 2) if cores is not None and rate > 0 else None  # type: ignore[arg-type]


def merge(rounds: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Median over rounds per (label, concurrency); errors summed."""
    groups: dict[tuple[str, int], list[dict[str, object]]] = {}
    for rows in rounds:
        for r in rows:
            groups.setdefault((str(r["label"]), int(r["concurrency"])), []).append(r)  # type: ignore[call-overload]
    out = []
    for (label, c), rs in groups.items():
        m: dict[str, object] = {"label": label, "concurrency": c}
        for k in ("img_s", "p50_ms", "p99_ms", "server_cores", "client_cores", "foreign_pct"):
            vals = [float(r[k]) for r in rs if r.get(k) is not None]  # type: ignore[arg-type]
            m[k] = round(median(vals), 2) if vals else None
        m["errors"] = sum(int(r["errors"]) for r in rs)  # type: ignore[call-overload]
        m["cpu_ms_img"] = cpu_ms(m)
        if len(rs) > 1:
            m["img_s_range"] = f"{min(float(r['img_s']) for r in rs):g}-{max(float(r['img_s']) for r in rs):g}"  # type: ignore[arg-type]
        out.append(m)
    return out


def verdict(rows: list[dict[str, object]], ceil: dict[str, object], hi: int, lo: int) -> list[str]:
    """The targets, each with its numbers and PASS/FAIL."""
    at = {(r["label"], r["concurrency"]): r for r in rows}
    vg, vg1 = at.get(("visiongate", hi)), at.get(("visiongate", lo))
    peers = [r for r in rows if r["concurrency"] == hi and r["label"] not in GATEWAY_CASES]
    lines = []
    if vg is None:
        return ["visiongate was not measured"]
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    if peers:
        best = max(peers, key=lambda r: float(r["img_s"]))  # type: ignore[arg-type]
        r_ips = float(vg["img_s"]) / float(best["img_s"])  # type: ignore[arg-type]
        r_p99 = float(vg["p99_ms"]) / float(best["p99_ms"])  # type: ignore[arg-type]
        lines.append(f"c={hi}: visiongate {vg['img_s']} img/s = {r_ips:.2f}x the best peer ({best['label']}, "
                     f"{best['img_s']} img/s); target >= 1.3x: {ok(r_ips >= 1.3)}")
        lines.append(f"c={hi}: visiongate p99 {vg['p99_ms']} ms = {r_p99:.2f}x {best['label']}'s "
                     f"{best['p99_ms']} ms; target <= 0.8x: {ok(r_p99 <= 0.8)}")
    if ceil:
        r_c = float(vg["img_s"]) / float(ceil["ceiling_img_s"])  # type: ignore[arg-type]
        lines.append(f"c={hi}: visiongate = {r_c:.2f}x the in-process ceiling ({ceil['ceiling_img_s']} img/s, "
                     f"{ceil['ceiling_case']}); target >= 0.9x: {ok(r_c >= 0.9)}")
    errs = sum(int(r["errors"]) for r in rows if r["label"] == "visiongate")  # type: ignore[call-overload]
    lines.append(f"visiongate errors at every concurrency: {errs}; target 0: {ok(errs == 0)}")
    if vg1 is not None:
        lines.append(f"c={lo}: visiongate p50 {vg1['p50_ms']} ms; target <= 15 ms: {ok(float(vg1['p50_ms']) <= 15)}")  # type: ignore[arg-type]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--servers", nargs="+",
                    default=["visiongate", "visiongate-raw", "fastapi", "litserve", "bentoml", "triton"],
                    choices=[*GATEWAY_CASES, *launch.PEERS])
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-d", "--duration", type=float, default=6.0, help="seconds per point")
    ap.add_argument("--ceiling-duration", type=float, default=5.0, help="seconds per ceiling case")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the servers (even rounds reversed); medians")
    ap.add_argument("--json", type=Path, help="append every measured row here as JSON lines")
    a = ap.parse_args()
    jpegs, model = load_images(), model_path()
    servers = []
    for s in a.servers:
        why = launch.available(s) if s in launch.PEERS else None
        if why:
            log(f"skipping {s}: {why}")
        else:
            servers.append(s)
    log(f"{len(jpegs)} JPEGs; model {model}; {NCPU} cores; {a.duration:g} s per point; servers {servers}")
    rounds = []
    for k in range(a.rounds):
        order = servers if k % 2 == 0 else servers[::-1]
        rows = [r for s in order for r in run_case(s, model, jpegs, a.concurrency, a.duration)]
        for r in rows:
            r["round"] = k + 1
        rounds.append(rows)
    log("in-process ceiling")
    ceil = ceiling(jpegs, a.ceiling_duration, model)
    if a.json:
        with open(a.json, "a") as f:
            for rows in rounds:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            f.write(json.dumps({"label": "ceiling", **ceil}) + "\n")
    rows = merge(rounds)
    order = {s: i for i, s in enumerate(servers)}
    rows.sort(key=lambda r: (order.get(str(r["label"]), 99), r["concurrency"]))
    cols = [("label", "server"), ("concurrency", "conc"), ("img_s", "img/s"), ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"), ("errors", "errors"), ("cpu_ms_img", "server CPU ms/img"),
            ("server_cores", "server cores"), ("client_cores", "client cores"), ("foreign_pct", "foreign %")]
    if a.rounds > 1:
        cols.insert(3, ("img_s_range", "img/s range"))
    print(table(rows, cols))
    print(f"\nin-process ceiling: {ceil['ceiling_img_s']} img/s ({ceil['ceiling_case']}; cases {ceil['cases']}; "
          f"foreign % up to {ceil['foreign_pct_max']})")
    print("\n" + "\n".join(verdict(rows, ceil, max(a.concurrency), min(a.concurrency))))
    foreign = max((float(r["foreign_pct"] or 0) for r in rows), default=0.0)  # type: ignore[arg-type]
    if foreign > 10:
        print(f"\nwarning: other processes took up to {foreign:.0f}% of the machine during this run; "
              "img/s and latency are depressed and noisy (ratios measured side by side still mean something)")


if __name__ == "__main__":
    main()
