#!/usr/bin/env bash
# Re-resolves every dependency of visiongate (all extras but gpu) in a fresh venv and writes the
# pins to deploy/constraints.txt, which deploy/install.sh, CI and the container image install with.
# Run it to upgrade dependencies on purpose; commit the new constraints.txt with the test results.
#   bash deploy/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
PIP=("$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" ".[export,test,triton,parquet,ray,otel]"
"${PIP[@]}" -r deploy/requirements-ci.txt
{
  echo "# Pins for visiongate and every extra but gpu, resolved by deploy/lock.sh on $(date -u +%Y-%m-%d)"
  echo "# (Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'), $(uname -m))."
  echo "# Used as pip constraints by deploy/install.sh and the Dockerfile: the suite a fresh clone runs"
  echo "# is the suite that passed. Upgrade: bash deploy/lock.sh, then ./tests/run.sh."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v -e '^visiongate' -e ' @ file:'
} > deploy/constraints.txt
echo "wrote deploy/constraints.txt ($(grep -vc '^#' deploy/constraints.txt) pins)" >&2
