"""What would a Raspberry Pi 4 or 5 take per film? An ESTIMATE, not a measurement: no Pi was at hand.

Steps, one function each:

    count       multiply-adds (MACs) per image of the bundled int8 file (read from the TFLite graph) and of
                MobileNetV2 screening models at 128/160/192/224 px (built with Keras, the same graph
                ``xscreen train`` builds: grey input, MobileNetV2 1.0, GAP, dense, heatmap and scope heads)
    published   the published Pi 4 / Pi 5 latencies of MobileNetV2 1.0 at 224 px, int8 (PUBLISHED below,
                each with its source), reduced to one range per board
    estimate    each model's Pi latency = the board's range x (the model's MACs / the reference's MACs)
    measure     (x86, here) int8 TFLite latency of the bundled file and of UNTRAINED variants (random
                weights, calibrated on random films): int8 kernel time does not depend on the weights'
                values, and the variants' op lists are checked to be the bundled file's
    publish     pi_estimate.json and pi_estimate.md

    python benchmarks/pi_estimate.py --threads 1 --runs 500 --out benchmarks/results/frontier

Needs the [train] extra (TensorFlow, Keras) for the variants; ``--no-measure`` skips the x86 latencies.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from xscreen.bench._measure import latency_summary

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "xscreen" / "models" / "xscreen_int8.tflite"
SIZES = (128, 160, 192, 224)
N_CLASSES = 3
SCOPE_DIM = 1280  # the bundled file's scope output: a full-rank whitening of the 1280 pooled features


@dataclass(frozen=True)
class PublishedLatency:
    """One published figure for MobileNetV2 1.0 at 224x224, int8, on a Raspberry Pi CPU."""

    board: str
    ms: float  # per image, as published (or derived from the published frame rate)
    runtime: str
    conditions: str
    source: str
    stock_clock_ms: float  # the same figure at the board's stock clock (differs only for an overclocked one)


PUBLISHED = (
    PublishedLatency(
        "Raspberry Pi 4", 1000 / 45.5, "TensorFlow Lite C++, mobilenet_v2_1.0_224_quant ('Mobile_V2 Lite')",
        "45.5 FPS for the whole classification app, 64-bit OS, overclocked to 1950 MHz",
        "https://github.com/Qengineering/TensorFlow_Lite_Classification_RPi_64-bits (README)",
        1000 / 45.5 * 1950 / 1800),  # Pi 4's stock clock is 1.8 GHz (1.5 GHz on the earliest boards)
    PublishedLatency(
        "Raspberry Pi 4", 26.4, "PyTorch, torchvision quantized mobilenet_v2 (qnnpack int8, TorchScript)",
        "'Model Time' 26.4 ms/frame (33.7 FPS whole loop), PyTorch's default threads, stock clock",
        "https://github.com/pytorch/tutorials/blob/main/intermediate_source/realtime_rpi.rst", 26.4),
    PublishedLatency(
        "Raspberry Pi 5", 1000 / 41, "PyTorch, torchvision quantized mobilenet_v2 (qnnpack int8, TorchScript)",
        "'~41 fps on a Raspberry Pi 5' for the whole loop (camera capture and preprocessing included): "
        "an upper bound for the model alone",
        "https://github.com/pytorch/tutorials/blob/main/intermediate_source/realtime_rpi.rst", 1000 / 41),
)
# Raspberry Pi's announcement: Pi 5 has "two to three times the CPU performance" of Pi 4.
PI5_SPEEDUP = (2.0, 3.0)
PI5_SPEEDUP_SOURCE = ("Raspberry Pi 5 announcement, as reported e.g. by https://circuitdigest.com/news/"
                      "the-new-raspberry-pi-5-is-here-faster-than-ever and https://www.zdnet.com/google-amp/"
                      "article/the-raspberry-pi-5-is-here-and-it-comes-with-some-huge-improvements/")


def keras_macs(model) -> int:
    """Multiply-adds of one image through a Keras model's Conv2D, DepthwiseConv2D and Dense layers."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def tflite_graph(path: Path, threads: int = 1):
    """An interpreter on ``path`` with batch 1, allocated (so every tensor has its concrete shape)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
    interpreter.allocate_tensors()
    return interpreter


def tflite_macs(path: Path) -> int:
    """Multiply-adds of one image through a TFLite file's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops."""
    interpreter = tflite_graph(path)
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():
        name, inputs, outputs = op["op_name"], op["inputs"], op["outputs"]
        out, weights = shapes[outputs[0]], shapes[inputs[1]] if len(inputs) > 1 else None
        if name == "CONV_2D":  # weights (out_c, kh, kw, in_c)
            total += int(np.prod(out)) * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, c)
            total += int(np.prod(out)) * int(weights[1] * weights[2])
        elif name == "FULLY_CONNECTED":  # weights (units, in)
            total += int(np.prod(out)) * int(weights[1])
    return total


def op_counts(path: Path) -> dict[str, int]:
    """How many ops of each kind a TFLite file runs: the variants must run the bundled file's ops."""
    return dict(sorted(collections.Counter(op["op_name"] for op in tflite_graph(path)._get_ops_details()).items()))


def build_variant(size: int, seed: int = 0):
    """The screening model ``xscreen train`` + ``export`` build, at ``size`` px, with random weights."""
    from xscreen.export._model import build_classifier, with_screening_outputs

    classifier = build_classifier(N_CLASSES, input_size=size, weights=None)
    rng = np.random.default_rng(seed)
    projection = rng.normal(size=(SCOPE_DIM, SCOPE_DIM)).astype("float32") / np.sqrt(SCOPE_DIM)
    model, _ = with_screening_outputs(classifier, np.zeros(SCOPE_DIM, "float32"), projection)
    return model


def export_int8_variant(model, size: int, path: Path, n_calibration: int = 16, seed: int = 0) -> None:
    """Full-int8 TFLite through the exporter's own converter, calibrated on random grey films."""
    from xscreen.export._formats import ExportInputs, convert_tflite_int8

    calibration = np.random.default_rng(seed).integers(0, 256, (n_calibration, size, size, 1), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp, "saved_model")
        model.export(str(saved), format="tf_saved_model", verbose=False)
        path.write_bytes(convert_tflite_int8(ExportInputs(model, saved, calibration, (size, size))))


def measure_tflite_latencies(paths: list[Path], threads: int, runs: int, warmup: int, rounds: int = 10) -> list[dict]:
    """Batch-1 latency of each TFLite file through ai-edge-litert, timed as ``xscreen bench`` times it.

    The files take turns, ``runs / rounds`` calls at a time, so load from other processes on a shared
    machine falls on all of them alike.
    """
    predictors = [_predictor(path, threads) for path in paths]
    samples: list[list[float]] = [[] for _ in paths]
    gc.disable()  # a collection mid-run is Python's cost, not the model's
    try:
        for _ in range(rounds):
            for (predict, pixels), sample in zip(predictors, samples):
                for _ in range(warmup):  # warm again after the other files ran
                    predict(pixels)
                sample.extend(_timed(predict, pixels, max(1, runs // rounds)))
    finally:
        gc.enable()
    return [{**latency_summary(sample), "warmup_per_round": warmup, "rounds": rounds} for sample in samples]


def _predictor(path: Path, threads: int):
    interpreter = tflite_graph(path, threads)
    detail = interpreter.get_input_details()[0]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    pixels = np.random.default_rng(0).integers(0, 256, detail["shape"], dtype=np.uint8)

    def predict(batch):
        interpreter.set_tensor(detail["index"], batch)
        interpreter.invoke()
        return [interpreter.get_tensor(i) for i in outputs]

    return predict, pixels


def _timed(predict, pixels, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        predict(pixels)
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


def board_ranges() -> dict[str, dict]:
    """One (low, high) ms range per board for MobileNetV2 1.0 224 int8, from PUBLISHED."""
    pi4 = [p.stock_clock_ms for p in PUBLISHED if p.board == "Raspberry Pi 4"]
    pi5_upper = [p.stock_clock_ms for p in PUBLISHED if p.board == "Raspberry Pi 5"]
    low5, high5 = min(pi4) / PI5_SPEEDUP[1], max(pi4) / PI5_SPEEDUP[0]
    return {
        "Raspberry Pi 4": {"low_ms": min(pi4), "high_ms": max(pi4),
                           "how": "the published Pi 4 figures, at the stock 1.8 GHz clock"},
        "Raspberry Pi 5": {"low_ms": low5, "high_ms": min(high5, *pi5_upper),
                           "how": f"the Pi 4 range divided by Raspberry Pi's 2-3x CPU speed-up, capped by the "
                                  f"published Pi 5 whole-loop figure ({min(pi5_upper):.1f} ms)"},
    }


def reference_macs() -> int:
    """MobileNetV2 1.0 at 224 px with its 1000-class ImageNet head: the model the published figures ran."""
    import keras

    return keras_macs(keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None))


def run(out: Path, measure: bool, runs: int, warmup: int, threads: tuple[int, ...], work: Path) -> dict:
    ref_macs = reference_macs()
    boards = board_ranges()
    models = [{"model": "bundled xscreen_int8.tflite (224 px, trained)", "input_px": 224,
               "macs": tflite_macs(BUNDLED), "macs_from": "the TFLite graph", "file": BUNDLED.name,
               "ops": op_counts(BUNDLED)}]
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    paths = [BUNDLED]
    for size in SIZES:
        model = build_variant(size)
        row = {"model": f"MobileNetV2 1.0 at {size} px (untrained)", "input_px": size,
               "macs": keras_macs(model), "macs_from": "the Keras model"}
        if measure:
            path = work / f"variant_{size}_int8.tflite"
            if not path.exists():  # an earlier run's file: the same seed gives the same model
                export_int8_variant(model, size, path)
            row.update(macs_tflite=tflite_macs(path), ops=op_counts(path), size_mb=path.stat().st_size / 1e6)
            paths.append(path)
        models.append(row)
    for t in threads if measure else ():
        for row, latency in zip(models, measure_tflite_latencies(paths, t, runs, warmup)):
            row.setdefault("latency_x86_ms", {})[str(t)] = latency
    for row in models:
        ratio = row["macs"] / ref_macs
        row["macs_vs_reference"] = ratio
        row["estimate_ms"] = {board: [r["low_ms"] * ratio, r["high_ms"] * ratio] for board, r in boards.items()}
        if measure:
            row["same_ops_as_bundled"] = row["ops"] == models[0]["ops"]
    report = {
        "what": "ESTIMATED Raspberry Pi latency per image (model call alone, batch 1, int8 TFLite): published "
                "MobileNetV2 1.0 224 int8 figures scaled by each model's multiply-adds. Not measured on a Pi.",
        "reference": {"model": "MobileNetV2 1.0, 224 px, 1000 classes (what the published figures ran)",
                      "macs": ref_macs},
        "published": [asdict(p) for p in PUBLISHED],
        "pi5_speedup": {"range": list(PI5_SPEEDUP), "source": PI5_SPEEDUP_SOURCE},
        "boards": boards,
        "models": models,
        "x86": ({"machine": platform.machine(), "processor": _cpu_model(), "cores": os.cpu_count(), "runs": runs,
                 "warmup": warmup, "threads": list(threads),
                 "load_1min": {"before": load_before, "after": os.getloadavg()[0]},
                 "note": "a shared machine under heavy load: the table shows each file's fastest run (min), the "
                         "least disturbed by other processes; read the ratios between rows, not the absolute "
                         "figures (xscreen bench measured the bundled int8 file at 1.73 ms p50, 1 thread, on this "
                         "machine when it was quiet)"} if measure else None),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/pi_estimate.py " + " ".join(sys.argv[1:]),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "pi_estimate.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "pi_estimate.md").write_text(render_markdown(report))
    return report


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def render_markdown(report: dict) -> str:
    boards = list(report["boards"])
    measured = report["x86"] is not None
    threads = report["x86"]["threads"] if measured else []
    lines = [
        "# Raspberry Pi latency: an ESTIMATE",
        "",
        "**Not measured on a Raspberry Pi.** Each figure is a published MobileNetV2 1.0 224 px int8 latency on that",
        "board, scaled by the model's multiply-adds (MACs) over the reference's "
        f"({report['reference']['macs'] / 1e6:.0f} M MACs). Model call alone, batch 1; decoding a film comes on top.",
        "Latency does not fall exactly with MACs (depthwise layers and small feature maps are memory-bound), so",
        "the smaller inputs are likely somewhat slower than estimated; the x86 columns below show by how much here.",
        "",
        "| model | input | M MACs | × reference | " + " | ".join(f"{b} (est. ms)" for b in boards)
        + "".join(f" | x86 {t} thr min ms (measured)" for t in threads)
        + (" | same ops as bundled |" if measured else " |"),
        "|---|---|---|---|" + "---|" * len(boards) + "---|" * len(threads) + ("---|" if measured else ""),
    ]
    for m in report["models"]:
        est = " | ".join(f"{lo:.0f}–{hi:.0f}" for lo, hi in m["estimate_ms"].values())
        row = f"| {m['model']} | {m['input_px']} | {m['macs'] / 1e6:.0f} | {m['macs_vs_reference']:.2f} | {est} |"
        if measured:
            row += "".join(f" {m['latency_x86_ms'][str(t)]['min']:.2f} |" for t in threads)
            row += f" {'yes' if m.get('same_ops_as_bundled') else 'NO'} |"
        lines.append(row)
    lines += ["", "Board ranges for the reference model (MobileNetV2 1.0, 224 px, int8):", ""]
    for board, r in report["boards"].items():
        lines.append(f"- {board}: {r['low_ms']:.1f}–{r['high_ms']:.1f} ms ({r['how']}).")
    lines += ["", "Published figures used:", ""]
    for p in report["published"]:
        lines.append(f"- {p['board']}: {p['ms']:.1f} ms ({p['runtime']}; {p['conditions']}; at stock clock "
                     f"{p['stock_clock_ms']:.1f} ms). Source: {p['source']}")
    lines.append(f"- Pi 5 over Pi 4: {PI5_SPEEDUP[0]:g}–{PI5_SPEEDUP[1]:g}× CPU performance. Source: "
                 f"{report['pi5_speedup']['source']}")
    if measured:
        x86 = report["x86"]
        lines += ["", f"x86 latencies: measured here ({x86['processor']}, {x86['cores']} cores, 1-minute load "
                      f"{x86['load_1min']['before']:.1f} before, {x86['load_1min']['after']:.1f} after; "
                      f"{x86['note']}), "
                      f"ai-edge-litert, {x86['runs']} timed runs per file and thread count in rounds (the files take "
                      f"turns), {x86['warmup']} warm-up calls per round, random pixels. The variants are "
                      "UNTRAINED (random weights, calibrated on random films): int8 latency does not depend on "
                      "the weights' values, and each variant runs the same ops as the bundled file (last column). "
                      "No trained variant exists yet, so no accuracy goes with these rows."]
    lines += ["", f"Made by `{report['command']}` ({report['measured_at']}).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "frontier")
    parser.add_argument("--no-measure", action="store_true", help="only count MACs and estimate (no export)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "xscreen-pi-estimate",
                        help="where the untrained variants' int8 files go (reused when there)")
    args = parser.parse_args(argv)
    run(args.out, not args.no_measure, args.runs, args.warmup, tuple(args.threads), args.work)
    print((args.out / "pi_estimate.md").read_text())


if __name__ == "__main__":
    main()
