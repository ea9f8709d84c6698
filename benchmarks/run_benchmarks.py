"""Reproduce xscreen's published benchmark (benchmarks/README.md) on this machine.

From the repository root, once ``xscreen train`` and ``xscreen export`` have written
``runs/cxr3/`` and ``models/cxr3/``::

    .venv/bin/python benchmarks/run_benchmarks.py

In one run, on ``../shared/data/fullres`` (original-size JPEGs) and the cxr3 test split:

* ``xscreen run`` (the real CLI, in a fresh process) with every model format at 1 and 2 threads:
  images/s, where the time goes, peak memory of the process;
* decode versus resize, measured separately per image on one core;
* the baseline most users write: Pillow full-size decode + resize, then Keras ``model.predict``
  one image at a time;
* the ceiling: pure inference on already-decoded arrays, and the throughput bound that
  decoding plus inference leave on this machine's cores;
* ``xscreen bench`` on the cxr3 test split (accuracy per class against latency).

It writes ``benchmarks/results/benchmarks.json`` (everything), ``benchmarks/results/benchmarks.md``
(the tables) and ``benchmarks/results/bench/`` (the bench report), and rewrites the results
section of ``benchmarks/README.md`` between its markers. Figures, not tests: nothing here fails
when a goal is missed; the report says so.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source checkout without installing

from benchmark_tables import MIN_SCREENINGS, find_row, render, update_readme  # noqa: E402

from xscreen.bench import BenchConfig, hardware_fingerprint, run_bench, summary_rows, write_report  # noqa: E402
from xscreen.runtime._decode import decode_radiograph, resize_grey  # noqa: E402

# The formats the published table compares, in its row order: (row name, file in --models).
FORMATS = (
    ("TFLite fp32", "xscreen_fp32.tflite"),
    ("TFLite fp16", "xscreen_fp16.tflite"),
    ("TFLite dynamic-range", "xscreen_dynamic.tflite"),
    ("TFLite int8", "xscreen_int8.tflite"),
    ("ONNX fp32", "xscreen_fp32.onnx"),
    ("ONNX int8", "xscreen_int8.onnx"),
)
GOAL_MODEL = "xscreen_int8.tflite"
GOALS = {"vs_keras_loop": 15.0, "of_ceiling": 0.80, "peak_rss_mb": 200.0}
POLL_S = 0.02


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def test_split_files(split_file: Path) -> list[Path]:
    """The test split of a split.csv (written by ``xscreen train``), as resolved paths."""
    with open(split_file, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["split"] == "test"]
    if not rows:
        raise SystemExit(f"{split_file} has no test rows")
    paths = []
    for row in rows:
        path = Path(row["file"])
        path = path if path.is_absolute() or path.exists() else split_file.parent / path
        paths.append(path.resolve())
    return paths


def write_list(files: list[Path], path: Path) -> Path:
    """A .txt list of absolute paths: a target `xscreen run` reads like a folder."""
    path.write_text("".join(f"{f.resolve()}\n" for f in files))
    return path


# ---------------------------------------------------------------------------------------------
# Decode versus resize (one core, in this process)
# ---------------------------------------------------------------------------------------------

def decode_vs_resize(files: list[Path], size: tuple[int, int], preprocessing: str, passes: int = 3) -> dict:
    """Per-image milliseconds of the pipeline's JPEG decode (with draft), its resize and the model's
    preprocessing finish (a JPEG round trip for the cxr3 id), apart.

    Mirrors ``decode_radiograph`` step by step and checks every image comes out identical, so the
    split is of the pipeline's own work. Also times a full-size decode (no draft), what the
    Keras baseline pays, and its resize. Each figure is the per-image minimum over ``passes`` passes (the files
    are in the page cache after the first), averaged over the images.
    """
    from PIL import Image

    from xscreen.runtime._decode import PREPROCESSINGS, _to_grey_uint8, jpeg_round_trip

    quality = PREPROCESSINGS[preprocessing]
    timings = np.full((len(files), 5), np.inf)
    for _ in range(passes):
        for i, path in enumerate(files):
            t0 = time.perf_counter()
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft("L", (size[1], size[0]))
                im.load()
                grey = _to_grey_uint8(im)
            t1 = time.perf_counter()
            pixels = resize_grey(grey, size)
            t2 = time.perf_counter()
            if quality is not None:
                pixels = jpeg_round_trip(pixels, quality)
            t2b = time.perf_counter()
            with Image.open(path) as im:
                full = im.convert("L")
            t3 = time.perf_counter()
            full.resize((size[1], size[0]), Image.BILINEAR)
            t4 = time.perf_counter()
            timings[i] = np.minimum(timings[i], [t1 - t0, t2 - t1, t2b - t2, t3 - t2b, t4 - t3])
            if not np.array_equal(pixels, decode_radiograph(path, size, preprocessing)):
                raise SystemExit(f"decode_vs_resize no longer mirrors decode_radiograph ({path}); update it")
    decode_ms, resize_ms, finish_ms, full_ms, full_resize_ms = (float(ms) for ms in timings.mean(axis=0) * 1000)
    return {"images": len(files), "passes": passes, "preprocessing": preprocessing, "decode_ms": decode_ms,
            "resize_ms": resize_ms, "finish_ms": finish_ms, "decode_resize_ms": decode_ms + resize_ms + finish_ms,
            "full_size_decode_ms": full_ms, "full_size_resize_ms": full_resize_ms}


# ---------------------------------------------------------------------------------------------
# Child processes: each measurement in a fresh interpreter, so none inherits another's state
# ---------------------------------------------------------------------------------------------

def run_child(args: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command, polling the peak resident memory (VmHWM) of it and its descendants, in MB.

    Polled rather than ``ru_maxrss``: exec() carries the parent's peak into the child's
    ru_maxrss, and this script may hold TensorFlow. VmHWM is a high-water mark, so polling misses
    at most the last POLL_S seconds.
    """
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=REPO)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            hwm = _vm_hwm_mb(pid)
            if hwm is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), hwm)
        time.sleep(POLL_S)
    stdout, stderr = proc.communicate()
    done = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return done, sum(peaks.values())


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in children for d in (int(c), *_descendants(int(c)))]


def python_child(task: str, **kwargs) -> dict:
    """Run one of this script's measurement tasks (``--task``) in a fresh interpreter; its JSON reply."""
    done, peak = run_child([sys.executable, __file__, "--task", task, "--task-args", json.dumps(kwargs)])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_peak_rss_mb": peak}


def task_keras_loop(model: str, files: list[str]) -> dict:
    """The loop most users write: full-size Pillow decode, resize, Keras predict, one image at a time."""
    started = time.perf_counter()
    import keras
    from PIL import Image

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    net = keras.models.load_model(model)
    load_s = time.perf_counter() - started
    height, width = net.input_shape[1:3]

    def predict_one(path: str) -> np.ndarray:
        image = Image.open(path).convert("L").resize((width, height), Image.BILINEAR)
        return net.predict(np.asarray(image, np.float32)[np.newaxis, ..., np.newaxis], verbose=0)

    predict_one(files[0])  # the first call traces the graph: left out, in the baseline's favour
    started = time.perf_counter()
    for path in files:
        predict_one(path)
    elapsed = time.perf_counter() - started
    return {"images": len(files), "elapsed_s": elapsed, "images_per_s": len(files) / elapsed,
            "ms_per_image": elapsed * 1000 / len(files), "import_s": import_s, "load_s": load_s,
            "keras": keras.__version__}


def task_inference_only(model: str, files: list[str], threads: int, batch_sizes: list[int],
                        repeat: int) -> dict:
    """Pure inference images/s on arrays decoded beforehand, per batch size (best of ``repeat``)."""
    from xscreen.runtime import load_model

    net = load_model(model, threads=threads)
    preprocessing = net.metadata.preprocessing
    pixels = np.stack([decode_radiograph(f, net.input_size, preprocessing) for f in files])[..., np.newaxis]
    out = {}
    for batch in batch_sizes:
        if batch > 1 and net.fixed_batch:
            continue
        for _ in range(3):
            net.predict(pixels[:batch])
        rates = []
        for _ in range(repeat):
            started = time.perf_counter()
            for i in range(0, len(pixels), batch):
                net.predict(pixels[i:i + batch])
            rates.append(len(pixels) / (time.perf_counter() - started))
        out[str(batch)] = {"images_per_s": max(rates), "all": rates}
    return {"images": len(pixels), "threads": threads, "by_batch": out}


TASKS = {"keras-loop": task_keras_loop, "inference-only": task_inference_only}


# ---------------------------------------------------------------------------------------------
# `xscreen run`, the real command
# ---------------------------------------------------------------------------------------------

# The real `xscreen run` command (xscreen.cli.main, what the console script calls), with a hook that
# hands this script the RunSummary it printed, at full precision instead of rounded text.
CLI_WITH_SUMMARY = """
import json, sys
import xscreen.cli as cli
summaries = []
screen = cli.run_screening
def recording(*args, **kwargs):
    summaries.append(screen(*args, **kwargs))
    return summaries[-1]
cli.run_screening = recording
try:
    cli.main(sys.argv[1:], prog_name="xscreen")
finally:
    print("RUN_SUMMARY " + json.dumps(summaries[-1].to_dict() if summaries else None), flush=True)
"""


def xscreen_run(target: Path, model: Path, threads: int, repeat: int, out: Path) -> dict:
    """``xscreen run`` in a fresh process ``repeat`` times: median images/s, its stage times, peak memory."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        done, peak = run_child([sys.executable, "-c", CLI_WITH_SUMMARY, "run", str(target), "--model", str(model),
                                "--threads", str(threads), "--out", str(out), "--overwrite"])
        process_s = time.perf_counter() - started
        summary = json.loads(done.stdout.rsplit("RUN_SUMMARY ", 1)[1])
        runs.append({key: summary[key] for key in ("screened", "errors", "elapsed_s", "images_per_s", "decode_s",
                                                   "inference_s", "write_s", "backend")}
                    | {"process_s": process_s, "peak_rss_mb": peak})
    runs.sort(key=lambda r: r["images_per_s"])
    median = runs[len(runs) // 2]
    return {**median, "images_per_s_all": [r["images_per_s"] for r in runs],
            "peak_rss_mb_all": [r["peak_rss_mb"] for r in runs]}


# ---------------------------------------------------------------------------------------------
# Summary and report
# ---------------------------------------------------------------------------------------------

def summarise(results: dict, threads: list[int], cores: int) -> dict:
    """The ratios the goals are about, per data set, for GOAL_MODEL at the highest thread count."""
    goal_row = next(row for row, name in FORMATS if name == GOAL_MODEL)
    top = max(threads)
    summary = {"model": goal_row, "threads": top, "cores": cores, "per_data": {}}
    single = {t["threads"]: t for t in results["inference_only"] if t["model"] == goal_row}
    for name, decode in results["decode"].items():
        run = find_row(results["xscreen_run"], data=name, model=goal_row, threads=top)
        if run is None:
            continue
        entry = {"xscreen_images_per_s": run["images_per_s"], "peak_rss_mb": run["peak_rss_mb"]}
        if min(threads) == 1 and 1 in single:
            # One core's inference per image at its best batch size: the least CPU time an image can take.
            infer_ms = 1000 / max(b["images_per_s"] for b in single[1]["by_batch"].values())
            bound = cores * 1000 / (decode["decode_resize_ms"] + infer_ms)
            entry.update({"decode_resize_ms": decode["decode_resize_ms"], "inference_ms_1_thread": infer_ms,
                          "ceiling_images_per_s": bound, "of_ceiling": run["images_per_s"] / bound})
        if top in single:
            entry["inference_only_images_per_s"] = max(b["images_per_s"] for b in single[top]["by_batch"].values())
        keras = results["keras_loop"].get(name)
        if keras:
            entry.update({"keras_images_per_s": keras["images_per_s"],
                          "vs_keras_loop": run["images_per_s"] / keras["images_per_s"]})
        summary["per_data"][name] = entry
    fullres = summary["per_data"].get("fullres", {})
    summary["goals"] = {
        "vs_keras_loop": _goal(fullres.get("vs_keras_loop"), GOALS["vs_keras_loop"], higher=True),
        "of_ceiling": _goal(fullres.get("of_ceiling"), GOALS["of_ceiling"], higher=True),
        "peak_rss_mb": _goal(fullres.get("peak_rss_mb"), GOALS["peak_rss_mb"], higher=False),
    }
    return summary


def _goal(value: float | None, target: float, higher: bool) -> dict:
    met = None if value is None else bool(value >= target if higher else value <= target)
    return {"target": target, "measured": value, "met": met}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=REPO / "models" / "cxr3",
                        help="folder with the exported xscreen_*.tflite / .onnx files")
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "cxr3",
                        help="the training run the models were exported from: its model.keras (the baseline) "
                             "and split.csv (the test split)")
    parser.add_argument("--fullres", type=Path, default=REPO.parent / "shared" / "data" / "fullres")
    parser.add_argument("--cxr3", type=Path, default=REPO.parent / "shared" / "data" / "cxr3")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure (median kept)")
    parser.add_argument("--keras-images", type=int, default=300,
                        help="images of the cxr3 test split the (slow) Keras loop runs over")
    parser.add_argument("--inference-images", type=int, default=300,
                        help="decoded images the inference-only ceiling runs over")
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 runs per bench row")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 40 images per data set, one repeat, 20 timed runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--no-readme", action="store_true", help="leave benchmarks/README.md alone")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="measure nothing: rewrite the tables (and README) from a benchmarks.json")
    parser.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--task-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.keras_images, args.inference_images, args.runs = 1, 40, 40, 20
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Paths relative to the repository root from here on: split.csv's are (xscreen train ran there), and the
    # published results then name no one's home folder.
    for name in ("models", "run", "fullres", "cxr3", "out", "render"):
        if getattr(args, name) is not None:
            setattr(args, name, Path(os.path.relpath(getattr(args, name).resolve(), REPO)))
    os.chdir(REPO)
    if args.task:  # a measurement child (see python_child)
        print(json.dumps(TASKS[args.task](**json.loads(args.task_args))))
        return 0
    if args.render:
        publish(json.loads(args.render.read_text()), args)
        return 0
    threads = [int(t) for t in args.threads.split(",")]
    models = [(row, args.models / name) for row, name in FORMATS if (args.models / name).is_file()]
    if not models:
        raise SystemExit(f"no xscreen_*.tflite/.onnx model in {args.models}: run xscreen export first")
    missing = [name for _, name in FORMATS if not (args.models / name).is_file()]
    keras_model = args.run / "model.keras"
    check_provenance([path for _, path in models], keras_model)
    log = _logger()
    results: dict = {
        "schema_version": 1,
        "command": shlex.join([Path(sys.executable).name, "benchmarks/run_benchmarks.py", *(argv or sys.argv[1:])]),
        "hardware": hardware_fingerprint(),
        "models": {row: {"file": str(path), "size_bytes": path.stat().st_size} for row, path in models},
        "missing_models": missing,
        "run": str(args.run),
        "goals": GOALS,
    }
    with tempfile.TemporaryDirectory(prefix="xscreen-benchmarks-") as tmp:
        tmp = Path(tmp)
        files = {"fullres": image_files(args.fullres), "cxr3-test": test_split_files(args.run / "split.csv")}
        if args.quick:
            files = {name: fs[:: max(1, len(fs) // 40)][:40] for name, fs in files.items()}
        # Each run lists the files enough times to screen about MIN_SCREENINGS: a 120-file run lasts under half
        # a second, too short for a steady rate (filling and draining the pipeline would dominate).
        listings = {name: max(1, -(-MIN_SCREENINGS // len(fs))) for name, fs in files.items()}
        targets = {name: write_list(fs * listings[name], tmp / f"{name}.txt") for name, fs in files.items()}
        results["data"] = {name: {"images": len(fs), "listed_times_per_run": listings[name]}
                           for name, fs in files.items()}
        size, preprocessing = _input_size_and_preprocessing(models[0][1])

        log("decode versus resize, one core")
        results["decode"] = {name: decode_vs_resize(fs, size, preprocessing) for name, fs in files.items()}

        results["xscreen_run"] = []
        for name, target in targets.items():
            for row, path in models:
                for t in threads:
                    log(f"xscreen run {name} {row} @ {t} threads x{args.repeat}")
                    results["xscreen_run"].append(
                        {"data": name, "model": row, "threads": t,
                         **xscreen_run(target, path, t, args.repeat, tmp / "results.csv")})

        results["inference_only"] = []
        ceiling_files = [str(f) for f in files["cxr3-test"][: args.inference_images]]
        for row, path in models:
            for t in threads:
                log(f"inference only {row} @ {t} threads")
                results["inference_only"].append({"model": row, **python_child(
                    "inference-only", model=str(path), files=ceiling_files, threads=t,
                    batch_sizes=[1, 8, 32], repeat=args.repeat)})

        results["keras_loop"] = {}
        if keras_model.is_file():
            for name, fs in files.items():
                subset = fs if name == "fullres" else fs[: args.keras_images]
                log(f"Keras loop {name} ({len(subset)} images)")
                results["keras_loop"][name] = python_child(
                    "keras-loop", model=str(keras_model), files=[str(f) for f in subset])
        else:
            log(f"no Keras model at {keras_model}: baseline skipped")

    log("xscreen bench on the cxr3 test split")
    bench = run_bench(BenchConfig(
        data=args.cxr3, models=[path for _, path in models], threads=threads, runs=args.runs,
        warmup=10, split="test", split_file=args.run / "split.csv", limit=40 if args.quick else None,
    ), progress=log)
    written = write_report(bench, args.out / "bench")
    results["bench"] = {"files": {k: str(v) for k, v in written.items() if v},
                        "table": summary_rows(bench.results)}
    results["summary"] = summarise(results, threads, results["hardware"]["cores_usable"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    publish(results, args)
    return 0


def publish(results: dict, args: argparse.Namespace) -> None:
    """benchmarks.md next to the JSON, the README's results section, and the tables on stdout."""
    markdown = render(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.md").write_text(markdown)
    if not args.no_readme:
        update_readme(REPO / "benchmarks" / "README.md", markdown)
    print(markdown)


def check_provenance(models: list[Path], keras_model: Path) -> None:
    """Refuse models exported from another Keras model than the run's: its split would not be theirs."""
    from xscreen.runtime import load_model

    if not keras_model.is_file():
        return
    digest = hashlib.sha256(keras_model.read_bytes()).hexdigest()
    for path in models:
        source = load_model(path).metadata.source_sha256
        if source is not None and source != digest:
            raise SystemExit(
                f"{path} was exported from a Keras model with sha256 {source[:12]}…, not {keras_model} "
                f"({digest[:12]}…): pass --run with the training run it came from, or its test split may hold "
                "images it was trained on"
            )


def _logger():
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def _input_size_and_preprocessing(model: Path) -> tuple[tuple[int, int], str]:
    from xscreen.runtime import load_model

    loaded = load_model(model)
    return tuple(loaded.input_size), loaded.metadata.preprocessing


if __name__ == "__main__":
    sys.exit(main())
