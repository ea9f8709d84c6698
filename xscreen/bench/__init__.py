"""``xscreen bench``: what each model format costs in speed and buys in accuracy, on one machine.

Light, like the runtime it measures: numpy and :mod:`xscreen.runtime`; matplotlib (the ``report``
extra) only draws ``pareto.png``. Each model x thread count is measured in a fresh Python process
(see :data:`METHODS` for the definition of every figure).

``bench.json`` schema, version 1 (``schema_version``; new keys may appear, a key changes meaning
only with a new version)::

    schema_version   1
    tool             "xscreen bench"
    hardware         cpu_model, emulated (true under qemu-user: timings are the emulator's), machine,
                     cores_logical, cores_physical, cores_usable,
                     simd [e.g. "avx2", "avx512_vnni", "neon"], memory_mb, load_avg_1m, os, python,
                     xscreen, packages {distribution: version}, date_utc (ISO 8601)
    data             path, split, split_file, split_note (where the bundled model's shipped split comes from,
                     when it is the split file; null otherwise), limit, seed, n_images, per_class {label: count},
                     readme (the data's own caveats, when found), model_training_data {model: text},
                     training_films_warnings {model: one line} (DATA is a folder the model's metadata
                     says it was trained on, and the bench is not --split test with a split file)
    settings         threads [..], runs, warmup, batch_size, workers, model_options (the --labels, --input-scaling,
                     --negative-label, --threshold given), model_options_applied_to [model] (all, or in a mix
                     of models with and without xscreen metadata those without it), isolation
    methods          {figure: how it is measured}
    results          one object per model x threads:
        model            display name (file name; the path where two share a name)
        on_training_films  true when training_films_warnings names this model
        path, format ("tflite" | "onnx"), variant (the model's own format tag, e.g. "tflite-int8"),
        backend ("ai-edge-litert 2.3.0", ...),
        input_dtype ("float32" | "uint8"), input_size [h, w], threads,
        input_scaling ("raw" for xscreen models), assumptions (what was assumed for a model without
                         xscreen metadata, one line; null otherwise)
        size_bytes       model file size
        load_ms          load_model wall time in a fresh process
        peak_rss_mb      peak resident memory of that process
        latency_ms       {mean, p50, p90, p99, min, max, runs, warmup}: batch 1, after warm-up
        throughput_ips   images/s through the `xscreen run` pipeline (decoding included)
        pipeline         {images, failed, elapsed_s, failures [{path, error}] (first 20)}
        wall_s           the row's total wall time
        metrics          n, accuracy, macro_f1 (over classes present in the data),
                         macro_f1_ci95 [low, high] (95% bootstrap interval, 1000 resamples), labels,
                         per_class {label: {precision, recall, f1, support, roc_auc}},
                         confusion_matrix (rows truth, columns prediction, in `labels` order),
                         screening {negative_label, threshold, sensitivity, specificity,
                                    tp, fn, tn, fp, roc_auc} (when the model has a threshold)
    disclaimer       "Not a medical device. ..."
"""

from ._bench import (
    DISCLAIMER,
    SCHEMA_VERSION,
    BenchConfig,
    BenchError,
    BenchReport,
    LabelMismatchError,
    labelled_images,
    run_bench,
    select_images,
)
from ._hardware import hardware_fingerprint
from ._measure import METHODS, bootstrap_macro_f1, latency_summary, measure_latency, peak_rss_mb
from ._report import has_matplotlib, pareto_front, render_markdown, summary_rows, terminal_rows, write_report

__all__ = [
    "DISCLAIMER",
    "METHODS",
    "SCHEMA_VERSION",
    "bootstrap_macro_f1",
    "BenchConfig",
    "BenchError",
    "BenchReport",
    "LabelMismatchError",
    "hardware_fingerprint",
    "has_matplotlib",
    "labelled_images",
    "latency_summary",
    "measure_latency",
    "pareto_front",
    "peak_rss_mb",
    "render_markdown",
    "run_bench",
    "select_images",
    "summary_rows",
    "terminal_rows",
    "write_report",
]
