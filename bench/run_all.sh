#!/usr/bin/env bash
# One command: set up the peers' venvs (once), then measure visiongate beside FastAPI, LitServe,
# BentoML, Triton and the in-process ceiling, and print the table with the target ratios.
#   bash bench/run_all.sh [compare.py args, e.g. -d 10 --rounds 3]
# env: VISIONGATE_BENCH_DIR (scratch: venvs, images, logs; default /tmp/visiongate-bench)
#      PYTHON (the gateway's venv python; default .venv/bin/python)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=${VISIONGATE_BENCH_DIR:-/tmp/visiongate-bench}
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$S"
venv() {  # dir requirements check-import
  if ! "$1/bin/python" -c "import $3" 2>/dev/null; then
    echo "[bench] making $1 (once)" >&2
    [ -x "$1/bin/python" ] || python3.11 -m venv "$1"
    "$1/bin/pip" install -q -r "$2" 2>&1 | grep -v "is ignored" >&2 || echo "[bench] $1 failed: that peer is skipped" >&2
  fi
}
venv "$S/peers-venv" "$ROOT/bench/peers/requirements.txt" "fastapi, litserve, onnxruntime, PIL"
venv "$S/bento-venv" "$ROOT/bench/peers/requirements-bento.txt" "bentoml, onnxruntime, PIL"
"$PY" -c "import aiohttp, tritonclient.grpc.aio" 2>/dev/null || echo "[bench] main venv lacks aiohttp/tritonclient: pip install aiohttp 'tritonclient[grpc]'" >&2
cd "$ROOT"
exec "$PY" bench/compare.py "$@"
