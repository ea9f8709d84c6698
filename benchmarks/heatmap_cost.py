"""What heatmaps cost per image: the cam output, its extraction, and drawing the overlays.

    PYTHONPATH=. .venv/bin/python benchmarks/heatmap_cost.py --model M_WITH_CAM [--baseline M_WITHOUT] \
        [--films DIR] [--threads 1] [--runs 200]

Per image, batch-1 medians over ``--runs`` calls on decoded films (or synthetic ones):
``predict`` (probabilities only) and ``predict_outputs`` (probabilities + CAM, what ``xscreen run
--heatmaps`` calls) on the model with the cam output, and ``predict`` on ``--baseline``, the same
model exported without it, when given: the graph's own cost of the extra output. Then the time to
draw one flagged film (decode again at full size, overlay PNG and report thumbnail). Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np

from xscreen.report._overlay import HEATMAP_MAX_SIDE, THUMBNAIL_MAX_SIDE, encode_thumbnail, render_overlay
from xscreen.runtime import decode_radiograph, discover_inputs, load_model
from xscreen.runtime._decode import resize_grey
from xscreen.runtime._demo import synthetic_film


def median_ms(call, batches: list[np.ndarray], runs: int) -> float:
    for batch in batches[:5]:
        call(batch)  # warm-up
    times = []
    for i in range(runs):
        started = time.perf_counter()
        call(batches[i % len(batches)])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model with the cam output")
    parser.add_argument("--baseline", type=Path, help="the same model exported without it")
    parser.add_argument("--films", type=Path, help="a folder of films (default: synthetic ones)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    model = load_model(args.model, threads=args.threads)
    if not model.has_heatmaps:
        raise SystemExit(f"{args.model} has no cam output")
    size = model.input_size
    paths = sorted(discover_inputs(args.films))[:50] if args.films else []
    films = [decode_radiograph(p) for p in paths] or [(synthetic_film(i, 1024) * 255).astype(np.uint8)
                                                      for i in range(8)]
    batches = [decode_radiograph(p, size, model.metadata.preprocessing)[None, :, :, None] for p in paths] or [
        resize_grey(f, size)[None, :, :, None] for f in films]

    def with_heatmap(batch):
        outputs = model.predict_outputs(batch)
        return outputs.cam[0, :, :, int(outputs.probabilities[0].argmax())].copy()

    result = {
        "model": str(args.model), "backend": model.backend, "threads": args.threads, "runs": args.runs,
        "films": str(args.films or "synthetic 1024 px"),
        "predict_ms": median_ms(model.predict, batches, args.runs),
        "predict_with_heatmap_ms": median_ms(with_heatmap, batches, args.runs),
    }
    result["extraction_overhead_pct"] = 100 * (result["predict_with_heatmap_ms"] / result["predict_ms"] - 1)
    if args.baseline:
        baseline = load_model(args.baseline, threads=args.threads)
        result["baseline"] = str(args.baseline)
        result["baseline_predict_ms"] = median_ms(baseline.predict, batches, args.runs)
        result["total_overhead_pct"] = 100 * (result["predict_with_heatmap_ms"] / result["baseline_predict_ms"] - 1)
    heatmap = with_heatmap(batches[0])
    draw = []
    for i in range(min(20, len(films) * 3)):
        started = time.perf_counter()
        film = decode_radiograph(paths[i % len(paths)]) if paths else films[i % len(films)]
        render_overlay(film, heatmap, "covid 0.99, flagged for review", HEATMAP_MAX_SIDE).save(io.BytesIO(), "PNG")
        encode_thumbnail(render_overlay(film, heatmap, "covid 0.99, flagged for review", THUMBNAIL_MAX_SIDE))
        draw.append(time.perf_counter() - started)
    result["draw_one_flagged_film_ms"] = 1000 * statistics.median(draw)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
