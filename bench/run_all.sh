#!/usr/bin/env bash
# The benchmark, one command: set up (once: the peers' venvs, the reference pipeline's float-input
# model, perf_analyzer), then bench/compare.py measures visiongate beside FastAPI, LitServe, BentoML,
# Triton and the in-process ceiling, and prints the tables with the target ratios.
#
# usage: bash bench/run_all.sh [more bench/compare.py args]
# env:   PIPELINE=both           reference (peers as their users write them) | visiongate (every peer
#                                gets the gateway's graph and decoder) | both
#        ROUNDS=1                repeat the servers (even rounds in reverse order); medians over rounds
#        DURATION=10 CONCURRENCY="1 8 32"   seconds per point, concurrencies
#        SERVERS="visiongate fastapi litserve bentoml triton"
#        CALIB=5                 seconds of CPU-speed probe before each server's block (0: none)
#        QUIET_WAIT=120 QUIET_MAX=10   wait up to N s per point for other load < M % of all cores
#        PERF_ANALYZER=1         also run Triton's perf_analyzer on the tensor model (0: skip)
#        VISIONGATE_BENCH_DIR=/tmp/visiongate-bench   scratch: venvs, model, images, logs, results/<stamp>/
#        PYTHON=<repo>/.venv/bin/python              the gateway's interpreter (has torch for the export)
#        SETUP_ONLY=1            set up and exit
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=${VISIONGATE_BENCH_DIR:-/tmp/visiongate-bench}
PY=${PYTHON:-$ROOT/.venv/bin/python}
PIPELINE=${PIPELINE:-both}
mkdir -p "$S/logs"
log() { echo "[bench $(date +%T)] $*" >&2; }
venv() {  # dir requirements check-import
  if ! "$1/bin/python" -c "import $3" 2>/dev/null; then
    log "making $1 (once)"
    [ -x "$1/bin/python" ] || python3.11 -m venv "$1"
    "$1/bin/pip" install -q -r "$2" 2>&1 | grep -v "is ignored" >&2 || log "$1 failed: that peer is skipped"
  fi
}
venv "$S/peers-venv" "$ROOT/bench/peers/requirements.txt" "fastapi, litserve, onnxruntime, PIL"
venv "$S/bento-venv" "$ROOT/bench/peers/requirements-bento.txt" "bentoml, onnxruntime, PIL"
"$PY" -c "import aiohttp, tritonclient.grpc.aio" 2>/dev/null || log "the gateway's venv lacks aiohttp/tritonclient: pip install aiohttp 'tritonclient[grpc]'"
REF=$S/model/efficientnet_lite0_float.onnx
if [ "$PIPELINE" != visiongate ] && [ ! -f "$REF" ]; then
  log "exporting the reference pipeline's float-input model (once)"
  "$PY" "$ROOT/bench/peers/export_model.py" "$REF" > "$S/logs/export.log" 2>&1 || { tail -20 "$S/logs/export.log" >&2; exit 1; }
  grep "^onnx:" "$S/logs/export.log" >&2
fi
PA_ARGS=()
if [ "${PERF_ANALYZER:-1}" = 1 ]; then
  # perf_analyzer: the tritonclient 2.41.0 wheel ships a binary that runs here; it needs libb64 and
  # libcudart, taken from the tritonserver libraries that nvidia-pytriton ships
  SP=$("$PY" -c "import site; print(site.getsitepackages()[0])")
  if [ ! -x "$S/pa/perf_analyzer" ] && mkdir -p "$S/pa/dl" "$S/pa/lib" \
      && "$PY" -m pip download -q --no-deps -d "$S/pa/dl" tritonclient==2.41.0 2>/dev/null; then
    "$PY" - "$S/pa" <<'PY'
import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(f"{sys.argv[1]}/dl/tritonclient-2.41.0-*.whl")[0])
open(f"{sys.argv[1]}/perf_analyzer", "wb").write(z.read("tritonclient-2.41.0.data/data/bin/perf_analyzer"))
PY
    chmod +x "$S/pa/perf_analyzer"
    ln -sf "$SP"/nvidia_pytriton.libs/libb64-*.so.0d "$S/pa/lib/libb64.so.0d"
    ln -sf "$SP"/nvidia_pytriton.libs/libcudart-*.so.12* "$S/pa/lib/libcudart.so.12"
  fi
  if [ -x "$S/pa/perf_analyzer" ]; then PA_ARGS=(--perf-analyzer "$S/pa/perf_analyzer" --perf-analyzer-libs "$S/pa/lib")
  else log "perf_analyzer not available: skipped"; fi
fi
[ "${SETUP_ONLY:-0}" = 1 ] && { log "setup done"; exit 0; }
OUT=$S/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log "results in $OUT"
cd "$ROOT"
# shellcheck disable=SC2086
VISIONGATE_BENCH_DIR=$S "$PY" bench/compare.py --pipeline "$PIPELINE" --rounds "${ROUNDS:-1}" \
  -d "${DURATION:-10}" -c ${CONCURRENCY:-1 8 32} -s ${SERVERS:-visiongate fastapi litserve bentoml triton} \
  --calib "${CALIB:-5}" --quiet-wait "${QUIET_WAIT:-120}" --quiet-max "${QUIET_MAX:-10}" \
  "${PA_ARGS[@]}" --json "$OUT/results.jsonl" "$@" | tee "$OUT/table.md"
ln -sfn "$OUT" "$S/results/latest"
