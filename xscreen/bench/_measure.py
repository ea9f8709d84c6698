"""Latency statistics and peak memory: how each number in a bench row is measured."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..runtime._metrics import macro_f1_rows

PERCENTILES = {"p50": 50, "p90": 90, "p99": 99}

# Written into bench.json so a reader never has to guess what a figure means.
METHODS = {
    "latency_ms": "model.predict on one decoded image (batch 1), after warm-up runs, each call timed with "
                  "perf_counter_ns, garbage collector paused; percentiles interpolate linearly",
    "throughput_ips": "images/s through xscreen.runtime.screen_files (decode, resize, batch, infer: the "
                      "`xscreen run` pipeline, without writing results) over every benched image",
    "load_ms": "wall time of xscreen.runtime.load_model in a fresh process (first import of the inference "
               "runtime, file read, interpreter creation)",
    "peak_rss_mb": "peak resident memory (VmHWM; ru_maxrss off Linux) of a fresh Python process that loaded "
                   "only this model and ran the latency and pipeline passes",
    "metrics": "xscreen.runtime classification_report on the pipeline's probabilities: argmax class; "
               "screening flag at the threshold stored in the model; over the films the scope check kept "
               "(metrics.scope: per true class, the share kept and the recall counting out-of-scope films as missed)",
}


def latency_summary(milliseconds) -> dict:
    """Mean, p50, p90, p99, min and max of a sample of latencies in milliseconds."""
    ms = np.asarray(milliseconds, dtype=np.float64)
    if ms.size == 0:
        raise ValueError("no latency samples")
    summary = {"mean": float(ms.mean())}
    summary.update({name: float(np.percentile(ms, q)) for name, q in PERCENTILES.items()})
    summary.update({"min": float(ms.min()), "max": float(ms.max()), "runs": int(ms.size)})
    return summary


def measure_latency(predict: Callable[[np.ndarray], object], pixels: np.ndarray, runs: int,
                    warmup: int) -> dict:
    """Call ``predict(pixels)`` ``warmup`` times untimed, then ``runs`` times timed; summarise."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        predict(pixels)
    samples = np.empty(runs, dtype=np.float64)
    was_enabled = gc.isenabled()
    gc.disable()  # a collection mid-run is Python's cost, not the model's
    try:
        for i in range(runs):
            start = time.perf_counter_ns()
            predict(pixels)
            samples[i] = time.perf_counter_ns() - start
    finally:
        if was_enabled:
            gc.enable()
    return {**latency_summary(samples / 1e6), "warmup": int(warmup)}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux: VmHWM, the high-water mark of this process's own address space. ``ru_maxrss`` is not
    used there because exec() carries the parent's peak into it: a bench child of a 2 GB parent
    would report 2 GB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # POSIX only; Windows has neither this nor /proc

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def bootstrap_macro_f1(y_true, y_pred, n_classes: int, resamples: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of macro-F1 (mean F1 over the classes present, as reported).

    Resamples images with replacement; says how far a macro-F1 difference between two models on
    these images could be chance.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if y_true.size == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    for b in range(resamples):
        pick = rng.integers(0, y_true.size, y_true.size)  # one draw per resample: memory stays O(N)
        scores[b] = macro_f1_rows(y_true[pick][None], y_pred[pick][None], n_classes)[0]
    low, high = np.percentile(scores, [2.5, 97.5])
    return [float(low), float(high)]
