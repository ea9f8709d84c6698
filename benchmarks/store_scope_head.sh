#!/usr/bin/env bash
# Store the scope head in the bundled model files: their metadata only, the network untouched (checked).
# 1. fit and judge the head on the int8 TFLite file's own outputs (benchmarks/results/scope_head.{md,json}) and
#    store it in that file; 2. the same for the ONNX file (scope_head_onnx.*);
# 3. check that each new file's probabilities, heatmaps and scope coordinates equal the old file's, bit for bit;
# 4. measure the end-to-end rates through `xscreen run`'s pipeline (benchmarks/results/scope_rates.*).
# Needs ../shared/data (cxr3, nih, fullres, ood), pydicom-data and scikit-image (the test extra), onnx for the
# ONNX file. The model runs once per image per file (cached under /tmp/xscreen-scope-cache): about 30 min on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
PY=${PY:-python}
# SPLIT: the run's split.csv for a newly trained model (default: the bundled model's films, tests/fixtures).
SPLIT_ARGS=()
if [ -n "${SPLIT:-}" ]; then SPLIT_ARGS=(--split-file "$SPLIT"); fi
BEFORE=$(mktemp -d)
trap 'rm -rf "$BEFORE"' EXIT
cp xscreen/models/xscreen_int8.tflite xscreen/models/xscreen_int8.onnx "$BEFORE/"
$PY benchmarks/scope_head.py --data "$DATA" "${SPLIT_ARGS[@]}" --write xscreen/models/xscreen_int8.tflite
$PY benchmarks/scope_head.py --data "$DATA" "${SPLIT_ARGS[@]}" --model xscreen/models/xscreen_int8.onnx \
    --write xscreen/models/xscreen_int8.onnx
$PY benchmarks/same_network.py "$BEFORE/xscreen_int8.tflite" xscreen/models/xscreen_int8.tflite --data "$DATA"
$PY benchmarks/same_network.py "$BEFORE/xscreen_int8.onnx" xscreen/models/xscreen_int8.onnx --data "$DATA"
$PY benchmarks/scope_rates.py --data "$DATA" "${SPLIT_ARGS[@]}" --limit 500
