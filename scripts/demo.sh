#!/usr/bin/env bash
# The README's main job on the embedded sample data: make phantoms (seeds the demo model never
# saw), segment them with the built-in demo model, print the results table and the pooled metrics
# against the phantoms' ground truth, and write overlay images.
set -euo pipefail
BIN="${1:-.venv/bin}"
OUT="${DEMO_OUT:-demo-output}"
"$BIN/brainseg" sample-data "$OUT/sample" --n 12 --seed 5000
"$BIN/brainseg" segment "$OUT/sample" "$OUT/segmented" --model demo --overlays --overwrite -q
echo
echo "masks: $OUT/segmented/images/  overlays: $OUT/segmented/overlays/  table: $OUT/segmented/results.csv"
echo "interactive: $BIN/napari  then Plugins > Brain tumour segmentation > Segment tumour"
