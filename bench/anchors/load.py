"""Closed-loop load generator for the anchors (loopback only).

Sends the 64 JPEGs round-robin at a fixed concurrency for a fixed duration and prints one
JSON line per concurrency: img/s, p50, p99 (ms), errors.  Targets:
  http URL                  multipart POST, field "file" (FastAPI, LitServe, BentoML, visiongate)
  triton-tensor HOST:PORT   tritonclient gRPC; the client decodes+preprocesses each JPEG (in a
                            2-thread pool, timed inside the request latency) and sends FP32 NCHW
  triton-jpeg HOST:PORT     tritonclient gRPC; sends the encoded JPEG as a BYTES tensor
Each request asks for top-5 (HTTP: the server's JSON; Triton: classification extension, class_count=5).

The machine may be shared (other sessions' benchmarks), so each point also reports CPU use from
/proc: server_cores (the server process and its descendants), client_cores (this process) and foreign_pct
(everything else, % of all cores).  With --quiet-wait S a point first waits (up to S seconds) until
foreign load is under --quiet-max %, and a point whose foreign_pct exceeds it is re-run once.
  quiet - - : only wait for a quiet machine, then exit (used before perf_analyzer).
usage: python load.py TARGET ADDR IMAGES_DIR [-c 1 8 32] [-d 15] [-w 2] [--model NAME] [--label X]
                      [--server-pid PID] [--quiet-wait 300] [--quiet-max 10]
"""
import argparse, asyncio, glob, io, json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np

HOSTS_OK = ("127.0.0.1", "localhost", "[::1]")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def preprocess(data: bytes) -> np.ndarray:
    from PIL import Image
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    l, t = (w - 224) // 2, (h - 224) // 2
    x = np.asarray(img.crop((l, t, l + 224, t + 224)), np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()


def cpu_snapshot(server_pid):
    """(time, all-cores busy ticks, ticks of server_pid and all its descendants, this process's ticks)"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v) - v[3] - v[4]  # minus idle, iowait
    srv = 0
    if server_pid:
        procs = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        st = f.read().rsplit(")", 1)[1].split()
                    procs[int(d)] = (int(st[1]), int(st[11]) + int(st[12]))  # ppid, utime+stime
                except (OSError, IndexError, ValueError):
                    pass
        kids = {}
        for pid, (ppid, _) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        todo = [server_pid] if server_pid in procs else []
        while todo:  # the whole tree: BentoML's workers, for one, leave the process group
            pid = todo.pop()
            srv += procs[pid][1]
            todo.extend(kids.get(pid, []))
    t = os.times()
    return time.perf_counter(), busy, srv, (t.user + t.system) * HZ


def cpu_delta(a, b):
    dt = b[0] - a[0]
    busy, srv, me = b[1] - a[1], b[2] - a[2], b[3] - a[3]
    return {"server_cores": round(srv / HZ / dt, 2), "client_cores": round(me / HZ / dt, 2),
            "foreign_pct": round(max(0.0, busy - srv - me) / HZ / dt / NCPU * 100, 1)}


async def wait_quiet(server_pid, max_wait, max_pct):
    """Wait until other processes use < max_pct of all cores over a 2 s sample."""
    t_end = time.perf_counter() + max_wait
    while True:
        a = cpu_snapshot(server_pid)
        await asyncio.sleep(2.0)
        f = cpu_delta(a, cpu_snapshot(server_pid))["foreign_pct"]
        if f < max_pct or time.perf_counter() > t_end:
            return f


def http_sender(url):
    import aiohttp
    state = {}

    async def send(data):
        if "s" not in state:
            state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                               timeout=aiohttp.ClientTimeout(total=60))
        form = aiohttp.FormData()
        form.add_field("file", data, filename="img.jpg", content_type="image/jpeg")
        async with state["s"].post(url, data=form) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            doc = json.loads(body)  # the peers answer {"top5": ...}, visiongate {"predictions": ...}
            return int((doc["top5"] if "top5" in doc else doc["predictions"])[0]["class_id"])

    async def close():
        if "s" in state:
            await state["s"].close()
    return send, close


def triton_sender(addr, model, tensor):
    import tritonclient.grpc.aio as grpc_aio
    from tritonclient.grpc import InferInput, InferRequestedOutput
    client = grpc_aio.InferenceServerClient(addr)
    pool = ThreadPoolExecutor(2)
    out = [InferRequestedOutput("LOGITS", class_count=5)]

    async def send(data):
        if tensor:
            x = (await asyncio.get_running_loop().run_in_executor(pool, preprocess, data))[None]
            inp = InferInput("INPUT", list(x.shape), "FP32")
        else:
            x = np.array([[data]], dtype=object)
            inp = InferInput("JPEG", [1, 1], "BYTES")
        inp.set_data_from_numpy(x)
        r = await client.infer(model, [inp], outputs=out, client_timeout=60)
        return int(r.as_numpy("LOGITS")[0][0].decode().split(":")[1])

    async def close():
        await client.close()
        pool.shutdown()
    return send, close


async def run_point(send, jpegs, conc, duration, warmup, server_pid=None):
    lat, errs, ok, last_err = [], 0, 0, None
    nxt = [0]
    for phase, secs in (("warmup", warmup), ("measure", duration)):
        snap0 = cpu_snapshot(server_pid) if phase == "measure" else None
        t0 = time.perf_counter()
        end = t0 + secs

        async def worker():
            nonlocal errs, ok, last_err
            while time.perf_counter() < end:
                i = nxt[0] % len(jpegs)
                nxt[0] += 1
                s = time.perf_counter()
                try:
                    await send(jpegs[i])
                    if phase == "measure":
                        ok += 1
                        lat.append(time.perf_counter() - s)
                except Exception as e:  # noqa: BLE001 - every failure counts as an error
                    if phase == "measure":
                        errs += 1
                        last_err = repr(e)[:200]
                    else:
                        await asyncio.sleep(0.05)
        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - t0
    cpu = cpu_delta(snap0, cpu_snapshot(server_pid))
    lat_ms = np.array(lat) * 1000 if lat else np.array([float("nan")])
    return {"concurrency": conc, "img_s": round(ok / elapsed, 1), "p50_ms": round(float(np.percentile(lat_ms, 50)), 1),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 1), "ok": ok, "errors": errs,
            "seconds": round(elapsed, 1), **cpu, **({"last_error": last_err} if last_err else {})}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=["http", "triton-tensor", "triton-jpeg", "quiet"])
    ap.add_argument("addr")
    ap.add_argument("images")
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-d", "--duration", type=float, default=15.0)
    ap.add_argument("-w", "--warmup", type=float, default=2.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--server-pid", type=int, default=None)
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=0.0)
    ap.add_argument("--quiet-max", type=float, default=10.0)
    a = ap.parse_args()
    if a.target == "quiet":
        f = await wait_quiet(None, a.quiet_wait, a.quiet_max)
        print(json.dumps({"quiet_foreign_pct": f}), flush=True)
        return
    host = a.addr.split("//")[-1].split("/")[0].rsplit(":", 1)[0]
    if host not in HOSTS_OK:
        sys.exit(f"refusing to send load to {host!r}: loopback only")
    files = sorted(glob.glob(os.path.join(a.images, "*.jpg")))
    jpegs = [open(f, "rb").read() for f in files]
    if a.target == "http":
        send, close = http_sender(a.addr)
    else:
        model = a.model or ("effnet_tensor" if a.target == "triton-tensor" else "effnet_jpeg")
        send, close = triton_sender(a.addr, model, a.target == "triton-tensor")
    label = a.label or a.target
    try:  # sanity: the chelsea photo must come back as a cat (ImageNet 281-285)
        cat = [j for f, j in zip(files, jpegs) if "chelsea" in f][0]
        top1 = await send(cat)
        check = {"label": label, "chelsea_top1": top1, "cat": 281 <= top1 <= 285}
    except Exception as e:  # noqa: BLE001
        check = {"label": label, "check_error": repr(e)[:300]}
    print(json.dumps(check), flush=True)
    for c in a.concurrency:
        for attempt in (1, 2):
            pre = await wait_quiet(a.server_pid, a.quiet_wait, a.quiet_max) if a.quiet_wait else None
            r = await run_point(send, jpegs, c, a.duration, a.warmup, a.server_pid)
            r.update(attempt=attempt, **({"foreign_pre_pct": pre} if pre is not None else {}))
            if not a.quiet_wait or r["foreign_pct"] <= a.quiet_max:
                break
            print(json.dumps({"label": label, "round": a.round, "retry": True, **r}), flush=True)
        print(json.dumps({"label": label, "round": a.round, **r}), flush=True)
    await close()


if __name__ == "__main__":
    asyncio.run(main())
