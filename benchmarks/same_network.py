"""Check that two model files hold the same network: every output equal, bit for bit, on real films.

    .venv/bin/python benchmarks/same_network.py BEFORE.tflite AFTER.tflite [--data ../shared/data]

For a file whose metadata alone was rewritten (``benchmarks/store_scope_head.sh``): the probabilities,
heatmaps and scope coordinates of the two files must be identical on the bundled model's held-out cxr3
films (or synthetic films without the data), and an ONNX file's graph must serialise to the same bytes.
Exit status 1, naming the first difference, otherwise.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from xscreen.runtime import decode_radiograph, load_model
from xscreen.runtime._demo import synthetic_film

ROOT = Path(__file__).resolve().parent
TEST_SPLIT = ROOT.parent / "tests" / "fixtures" / "bundled_model_test_split.csv"
FILMS = 200


def films(data: Path, size: tuple[int, int], preprocessing: str) -> np.ndarray:
    cxr3 = data / "cxr3"
    if cxr3.is_dir():
        with open(TEST_SPLIT, newline="") as fh:
            paths = [cxr3 / row["file"] for row in csv.DictReader(fh)][:: 1100 // FILMS]
        grey = [decode_radiograph(p, size, preprocessing) for p in paths]
    else:
        grey = [np.asarray(synthetic_film(seed, size[0]) * 255, np.uint8) for seed in range(FILMS)]
    negatives = [255 - g for g in grey[:20]]  # out-of-scope inputs too: the scope coordinates far from the films
    return np.stack(grey + negatives)[..., None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data")
    args = parser.parse_args()
    before, after = load_model(args.before, threads=1), load_model(args.after, threads=1)
    pixels = films(args.data, before.input_size, before.metadata.preprocessing)
    a, b = before.predict_outputs(pixels), after.predict_outputs(pixels)
    for name in ("probabilities", "cam", "scope"):
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
            print(f"DIFFERENT: {name} of {args.after} differs from {args.before}")
            return 1
    if before.format == "onnx":
        import onnx

        graphs = [onnx.load(str(path)).graph.SerializeToString() for path in (args.before, args.after)]
        if graphs[0] != graphs[1]:
            print(f"DIFFERENT: the ONNX graph of {args.after} differs from {args.before}")
            return 1
    print(f"same network: probabilities, heatmaps and scope coordinates identical on {len(pixels)} images "
          f"({args.before.name} -> {args.after.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
