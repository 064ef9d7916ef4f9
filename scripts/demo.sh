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
# napari needs a Qt binding (make demo installs PyQt6 through the [all] extra); say how to get one
# rather than print a command that fails with "No Qt bindings could be found".
if "$BIN/python" -c "import qtpy" >/dev/null 2>&1; then
  echo "interactive: $BIN/napari  then Plugins > Brain tumour segmentation > Segment tumour"
else
  echo "interactive: no Qt binding is installed; first run: $BIN/pip install \"napari[pyqt6]\""
  echo "             then $BIN/napari  and Plugins > Brain tumour segmentation > Segment tumour"
fi
