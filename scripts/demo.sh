#!/usr/bin/env bash
# The README's main job on the embedded sample data: make phantoms and read them back.
set -euo pipefail
BIN="${1:-.venv/bin}"
OUT="${DEMO_OUT:-demo-output}"
"$BIN/brainseg" sample-data "$OUT/sample" --n 12 --seed 0
"$BIN/brainseg" info "$OUT/sample"
