#!/usr/bin/env bash
# Regenerate service/protocol/*_pb2*.py from the vendored Triton .proto files.
#
#   deploy/gen-protos.sh            # uses (or creates) a throwaway venv in /tmp/venv-grpctools
#
# The .proto files are Triton's own (triton-inference-server/common, branch r24.10 = server 2.51,
# folder protobuf/). grpcio-tools is pinned so the generated code targets protobuf 6.31 (runtime
# floor protobuf>=6.31.1,<7) and grpcio>=1.75.1; bump both pins together.
#
# Three edits are made to protoc's output:
#  - a `# ruff: noqa` / `# mypy: ignore-errors` header (generated code is not ours to lint);
#  - imports between the generated modules become package-relative (`from . import x_pb2`);
#  - the descriptors go into the package's own descriptor pool (service/protocol/_pool.py), not
#    protobuf's default pool, because tritonclient registers the same file names and message names
#    ("model_config.proto", inference.ModelConfig) in the default pool and both load in one process.
set -euo pipefail
GRPCIO_TOOLS_VERSION=1.75.1
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$HERE/service/protocol"
VENV="${GRPCTOOLS_VENV:-/tmp/venv-grpctools-$GRPCIO_TOOLS_VERSION}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi
cd "$OUT"
rm -f ./*_pb2.py ./*_pb2.pyi ./*_pb2_grpc.py
"$VENV/bin/python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
  model_config.proto grpc_service.proto health.proto
rm -f model_config_pb2_grpc.py   # model_config.proto declares no service
"$VENV/bin/python" - <<'PY'
import pathlib
import re

for path in sorted(pathlib.Path(".").glob("*_pb2*.py*")):
    text = path.read_text()
    text = re.sub(r"^import (\w+_pb2) as (\w+)$", r"from . import \1 as \2", text, flags=re.M)
    if path.suffix == ".py" and "_descriptor_pool.Default()" in text:
        text = text.replace("_descriptor_pool.Default()", "_POOL")
        text = text.replace("# @@protoc_insertion_point(imports)",
                            "from ._pool import POOL as _POOL\n# @@protoc_insertion_point(imports)", 1)
    # generated code: neither linted nor type-checked (its .pyi stubs still type the callers)
    path.write_text("# ruff: noqa\n# mypy: ignore-errors\n" + text)
PY
echo "generated: $(ls "$OUT"/*_pb2*.py* | xargs -n1 basename | tr '\n' ' ')"
