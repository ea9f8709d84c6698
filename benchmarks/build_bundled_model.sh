#!/usr/bin/env bash
# Reproduce the bundled model from scratch: train on cxr3, export and verify every format, write
# MODEL_CARD.md from the reports, and copy the shipped files into the package.
# Needs: pip install -e '.[all]'; ../shared/data/cxr3 and the offline ImageNet backbone (or internet,
# with WEIGHTS=imagenet). About 10-15 min on 2 CPU cores (training) + 3-5 min (export).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cxr3}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5}
RUN=${RUN:-runs/cxr3}
MODELS=${MODELS:-models/cxr3}

xscreen train "$DATA" --out "$RUN" --weights "$WEIGHTS"
xscreen export "$RUN/model.keras" --formats all --calibration "$DATA" --out "$MODELS"
python -c "import sys; from xscreen.export import write_model_card; \
write_model_card(sys.argv[1], sys.argv[2], sys.argv[3], 'tflite-int8', 'MODEL_CARD.md')" "$RUN" "$MODELS" "$DATA"
mkdir -p xscreen/models
cp "$MODELS/xscreen_int8.tflite" "$MODELS/xscreen_int8.onnx" xscreen/models/
echo "bundled: $(ls xscreen/models)"
