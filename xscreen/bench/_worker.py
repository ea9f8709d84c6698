"""One bench row, measured in a fresh process: ``python -m xscreen.bench._worker TASK.json RESULT.json``.

A fresh process per model x threads keeps each row's load time and peak memory its own (no other
model, no TensorFlow, no parent's decoded images) and stops one runtime's thread pools from
slowing the next. It imports only numpy and the runtime, as ``xscreen run`` does.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..runtime import load_model, screen_files
from ..runtime._decode import DecodeError, decode_radiograph
from ..runtime._metrics import classification_report
from ._measure import bootstrap_macro_f1, measure_latency, peak_rss_mb


def measure_row(task: dict) -> dict:
    """Load the model, time it at batch 1, run the labelled images through the pipeline, score them."""
    started = time.perf_counter()
    model = load_model(task["model"], threads=task["threads"], **task.get("model_options", {}))
    load_ms = (time.perf_counter() - started) * 1000
    meta = model.metadata
    files, truth = task["files"], task["truth"]

    pixels = _first_decodable(files, meta.input_size, meta.preprocessing)[np.newaxis, ..., np.newaxis]
    latency = measure_latency(model.predict, pixels, task["runs"], task["warmup"])

    probabilities, y_true, failures, out_of_scope = [], [], [], []
    screened = {label: Counter() for label in meta.labels}  # per true class: status -> files
    started = time.perf_counter()
    # One result per file, in input order; the scope check on, as `xscreen run` does by default.
    results = screen_files(files, model, workers=task.get("workers"), batch_size=task.get("batch_size"))
    for label, result in zip(truth, results):
        screened[label][result.status] += 1
        if result.status == "ok":
            probabilities.append([result.probabilities[name] for name in meta.labels])
            y_true.append(meta.labels.index(label))
        elif result.status == "out_of_scope":
            out_of_scope.append({"path": result.path, "reason": result.error})
        else:
            failures.append({"path": result.path, "error": result.error})
    elapsed = time.perf_counter() - started

    probabilities = np.array(probabilities, dtype=np.float64).reshape(len(y_true), len(meta.labels))
    metrics = classification_report(y_true, probabilities, meta.labels, meta.negative_label, meta.threshold)
    metrics["macro_f1_ci95"] = bootstrap_macro_f1(y_true, probabilities.argmax(axis=1), len(meta.labels))
    metrics["scope"] = scope_by_class(screened, metrics, model.has_scope)
    return {
        "format": model.format,
        "variant": meta.format or f"{model.format}-{meta.input_dtype}",
        "backend": model.backend,
        "input_dtype": meta.input_dtype,
        "input_size": list(meta.input_size),
        "input_scaling": meta.input_scaling,
        "assumptions": model.assumptions,
        "threads": task["threads"],
        "size_bytes": Path(task["model"]).stat().st_size,
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
        "latency_ms": latency,
        "throughput_ips": len(files) / elapsed if elapsed > 0 else None,
        "pipeline": {"images": len(files), "failed": len(failures), "out_of_scope": len(out_of_scope),
                     "elapsed_s": elapsed, "failures": failures[:20], "out_of_scope_files": out_of_scope[:20]},
        "metrics": metrics,
    }


def scope_by_class(screened: dict[str, Counter], metrics: dict, image_check: bool) -> dict:
    """Per true class: files decoded, share the scope check kept, and recall counting out-of-scope as missed."""
    per_class = {}
    for label, statuses in screened.items():
        decoded = statuses["ok"] + statuses["out_of_scope"]
        if not decoded:
            continue
        row = metrics["per_class"].get(label) or {}
        per_class[label] = {
            "images": decoded,
            "in_scope": statuses["ok"],
            "in_scope_rate": statuses["ok"] / decoded,
            "recall_of_all": row.get("recall", 0.0) * statuses["ok"] / decoded,
        }
    return {"image_check": image_check, "per_class": per_class}


def _first_decodable(files: list[str], size: tuple[int, int], preprocessing: str) -> np.ndarray:
    for path in files:
        try:
            return decode_radiograph(path, size, preprocessing)
        except DecodeError:
            continue
    raise DecodeError("none of the labelled images decodes; see the pipeline errors")


def main(argv: list[str]) -> int:
    task_file, result_file = argv
    row = measure_row(json.loads(Path(task_file).read_text()))
    Path(result_file).write_text(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
