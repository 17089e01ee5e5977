#!/usr/bin/env bash
# The README's test command (and all that CI runs): install what the suite needs, export the
# default models if missing, run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh test
if [ -f tests/system-deps.sh ]; then bash tests/system-deps.sh; fi
.venv/bin/visiongate export --defaults --missing-only --no-progress
exec .venv/bin/python -m pytest "$@"
