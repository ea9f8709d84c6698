#!/usr/bin/env bash
# Reproduce the bundled model from scratch: train on cxr3 + nih (with the hold-out models whose figures
# the model card reports), export and verify every format, measure what the card needs on the shipped
# file (out-of-scope rates, heatmap shortcut audit), write MODEL_CARD.md from the reports, and copy the
# shipped files into the package.
# Needs: pip install -e '.[all]'; ../shared/data/{cxr3,nih} and the offline ImageNet backbone (or internet,
# with WEIGHTS=imagenet). About 60-80 min on 2 CPU cores (training and three hold-out models) + 10 min (export).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5}
RUN=${RUN:-runs/cxr3nih}
MODELS=${MODELS:-models/cxr3nih}

xscreen train "$DATA/cxr3" "$DATA/nih" --out "$RUN" --weights "$WEIGHTS" --epochs 12 --patience 3 \
    --hold-out nih=source:nih-chestxray14 --hold-out 'kermany-normal2=file:*NORMAL2-*' \
    --hold-out rsna-normals=source:rsna
xscreen export "$RUN/model.keras" --formats all --out "$MODELS"   # int8 calibrated on the run's training films
mkdir -p xscreen/models
cp "$MODELS/xscreen_int8.tflite" "$MODELS/xscreen_int8.onnx" xscreen/models/
python benchmarks/shortcut_audit.py "$RUN" xscreen/models/xscreen_int8.tflite "$MODELS"
python benchmarks/scope_rates.py --split-file "$RUN/split.csv" --limit 500   # benchmarks/results/scope_rates.*
# benchmarks/results/site_calibration.md comes from benchmarks/site_calibration.py on a model trained without
# NIH and the NORMAL2 series (README, "Calibrate to your clinic", says how); the card quotes it when present.
python -c "import sys; from xscreen.export import write_model_card; \
write_model_card(sys.argv[1], sys.argv[2], 'tflite-int8', 'MODEL_CARD.md', 'benchmarks/results/scope_rates.md', \
sys.argv[2] + '/shortcut_audit.md', 'benchmarks/results/site_calibration.md')" "$RUN" "$MODELS"
echo "bundled: $(ls xscreen/models)"
