"""What heatmaps cost per image: the cam output, its extraction, and drawing the overlays.

    PYTHONPATH=. .venv/bin/python benchmarks/heatmap_cost.py --model M_WITH_CAM [--baseline M_WITHOUT] \
        [--films DIR] [--threads 1] [--runs 200]

Per image, batch-1 wall-clock medians (and mean CPU times) over ``--runs`` interleaved calls on
decoded films (or synthetic ones):
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

from xscreen.report._overlay import (
    HEATMAP_MAX_SIDE,
    THUMBNAIL_MAX_SIDE,
    encode_thumbnail,
    render_overlay,
    save_heatmap_png,
)
from xscreen.runtime import decode_radiograph, discover_inputs, load_model
from xscreen.runtime._decode import resize_grey
from xscreen.runtime._demo import synthetic_film


def median_ms(calls: dict, batches: list[np.ndarray], runs: int) -> dict[str, float]:
    """Median milliseconds per call of each callable, interleaved so that machine noise hits all alike."""
    for call in calls.values():
        for batch in batches[:5]:
            call(batch)  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(runs):
        for name, call in calls.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            call(batches[i % len(batches)])
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    return {**{name: 1000 * statistics.median(v) for name, v in wall.items()},
            **{name.replace("_ms", "_cpu_ms"): 1000 * statistics.mean(v) for name, v in cpu.items()}}


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

    calls = {"predict_ms": model.predict, "predict_with_heatmap_ms": with_heatmap}
    if args.baseline:
        calls["baseline_predict_ms"] = load_model(args.baseline, threads=args.threads).predict
    result = {
        "model": str(args.model), "baseline": str(args.baseline), "backend": model.backend,
        "threads": args.threads, "runs": args.runs, "films": str(args.films or "synthetic 1024 px"),
        **median_ms(calls, batches, args.runs),
    }
    for clock in ("ms", "cpu_ms"):  # wall-clock medians, and mean CPU time (steadier on a busy machine)
        with_heatmap_time = result[f"predict_with_heatmap_{clock}"]
        result[f"extraction_overhead_pct_{clock}"] = 100 * (with_heatmap_time / result[f"predict_{clock}"] - 1)
        if args.baseline:
            result[f"total_overhead_pct_{clock}"] = 100 * (with_heatmap_time / result[f"baseline_predict_{clock}"] - 1)
    heatmap = with_heatmap(batches[0])
    draw, draw_cpu = [], []
    for i in range(min(20, len(films) * 3)):
        started, started_cpu = time.perf_counter(), time.process_time()
        film = decode_radiograph(paths[i % len(paths)]) if paths else films[i % len(films)]
        save_heatmap_png(render_overlay(film, heatmap, "covid 0.99, flagged for review", HEATMAP_MAX_SIDE),
                         io.BytesIO(), "benchmark")
        encode_thumbnail(render_overlay(film, heatmap, "covid 0.99, flagged for review", THUMBNAIL_MAX_SIDE))
        draw.append(time.perf_counter() - started)
        draw_cpu.append(time.process_time() - started_cpu)
    result["draw_one_flagged_film_ms"] = 1000 * statistics.median(draw)
    result["draw_one_flagged_film_cpu_ms"] = 1000 * statistics.mean(draw_cpu)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
