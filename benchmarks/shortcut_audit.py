"""Heatmap shortcut audit of a shipped model on its held-out split, for the model card.

    python benchmarks/shortcut_audit.py RUN_DIR MODEL_FILE OUT_DIR

Screens the test split of RUN_DIR/split.csv through the runtime (the file as it ships, its own cam
output), and writes OUT_DIR/shortcut_audit.{json,md}: per true class and source, the share of the
predicted class's positive heatmap mass in the lung fields, corners, borders and elsewhere
(``xscreen.report.shortcut_audit``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from xscreen.export._train import decode_all
from xscreen.report import shortcut_audit, shortcut_audit_markdown
from xscreen.runtime import load_model
from xscreen.runtime._labelled import read_split_csv


def main(run: Path, model_file: Path, out: Path) -> None:
    model = load_model(model_file)
    if not model.has_heatmaps:
        sys.exit(f"{model_file} has no heatmap output")
    test = [img for img in read_split_csv(run / "split.csv") if img.split == "test"]
    pixels, kept, _ = decode_all(test, model.input_size, model.metadata.preprocessing, print)
    test = [test[i] for i in kept]
    cams, predicted = [], []
    for i in range(0, len(pixels), 64):
        outputs = model.predict_outputs(pixels[i:i + 64])
        cams.append(outputs.cam)
        predicted.extend(outputs.probabilities.argmax(1).tolist())
    groups = [(img.label, img.source) for img in test]
    audit = shortcut_audit(np.concatenate(cams), predicted, groups)
    audit["model"] = str(model_file)
    audit["films"] = f"test split of {run / 'split.csv'} ({len(test)} films), grouped by (true label, source)"
    out.mkdir(parents=True, exist_ok=True)
    (out / "shortcut_audit.json").write_text(json.dumps(audit, indent=2) + "\n")
    (out / "shortcut_audit.md").write_text(
        f"Films: {audit['films']}; model `{model_file.name}`.\n\n" + shortcut_audit_markdown(audit))
    print((out / "shortcut_audit.md").read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
