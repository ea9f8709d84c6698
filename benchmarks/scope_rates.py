"""How often the scope check calls each kind of input out of scope, and what it costs per image.

    .venv/bin/python benchmarks/scope_rates.py                                  # the bundled model
    .venv/bin/python benchmarks/scope_rates.py --model models/xscreen_int8.onnx \
        --split-file runs/cxr3nih/split.csv --limit 500

Sets (each through ``xscreen.runtime.screen_files``, the pipeline ``xscreen run`` uses):

* ``dicom-not-chest``: every sample DICOM that pydicom and pydicom-data ship whose Modality is not
  CR/DX (CT, MR, US, NM, PT, RTDOSE, SEG, secondary captures ...), with pixel data;
* ``photos``: scikit-image's bundled sample photos (PNG and JPEG in ``skimage/data``);
* ``synthetic``: the demo's synthetic films (``xscreen demo`` writes the first six) and 50 more seeds;
* ``cxr3-test`` and ``nih-test``: held-out frontal films, the ``test`` rows of ``--split-file`` under
  each folder (without a split file: xscreen 0.1's cxr3 test films from ``tests/fixtures``, of which the
  0.2 network trained on 436 of 1,100, and every nih film, which includes training films; films the
  bundled network and head never saw: ``scope_frontal_heldout.py``);
* ``fullres``: original full-resolution frontal films (of cxr3 films, most of them training films);
* ``ood-lateral``, ``ood-ct``: the real lateral films and CT slices of ``../shared/data/ood`` (the scope
  head learned from them: cross-validated rates are in ``scope_head.md``);
* ``blank``: uniform and nearly uniform images (seeds the head never saw);
* ``cxr3-test-inverted``: the ``cxr3-test`` films as negatives: the reasons column shows how many are
  named *probably inverted*.

For each set: the out-of-scope rate over the files that decode, by the header rules and the image
score together (what ``xscreen run`` does) and by the image score alone (``--no-scope-check`` off
for the header: each film decoded and scored). Cost: ``predict_outputs`` + the scope decision
against ``predict`` alone, per image, at batch 1 and the pipeline's batch. Writes
``benchmarks/results/scope_rates.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from xscreen.runtime import DEFAULT_BATCH_SIZE, DecodeError, decode_radiograph, load_model, screen_files
from xscreen.runtime._demo import synthetic_film, write_demo_films
from xscreen.runtime._labelled import LabelledImage, read_labelled_folder, read_split_csv, stratified_sample
from xscreen.runtime._model import default_model_path
from xscreen.runtime._scope import RADIOGRAPH_MODALITIES, dicom_header_reason, image_reasons

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
BUNDLED_TEST_SPLIT = ROOT.parent / "tests" / "fixtures" / "bundled_model_test_split.csv"
SYNTHETIC_EXTRA = 50
BLANK_IMAGES = 40
COST_RUNS = 300


def package_folder(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent.joinpath(*parts)


def dicom_not_chest() -> list[Path]:
    """Sample DICOMs of pydicom and pydicom-data with pixel data and a Modality other than a radiograph's."""
    import pydicom

    found = []
    for folder in (package_folder("pydicom", "data", "test_files"), package_folder("data_store", "data")):
        for path in sorted(p for p in (folder.rglob("*") if folder else []) if p.is_file()):
            try:
                ds = pydicom.dcmread(path, defer_size="1 KB")  # tags only; pixel data stays on disk
            except Exception:  # not DICOM, or damaged on purpose (pydicom's own test files)
                continue
            if str(ds.get("Modality", "")).upper() not in RADIOGRAPH_MODALITIES and "PixelData" in ds:
                found.append(path)
    return found


def photos() -> list[Path]:
    folder = package_folder("skimage", "data")
    return sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg")) if folder else []


def synthetic(folder: Path) -> list[Path]:
    from PIL import Image

    paths = [p for p in write_demo_films(folder) if "broken" not in p.name]
    for seed in range(10, 10 + SYNTHETIC_EXTRA):
        path = folder / f"extra-{seed}.png"
        Image.fromarray((synthetic_film(seed) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def ood(data: Path, kind: str) -> list[Path]:
    """The real lateral films or CT slices of ``../shared/data/ood`` (``kind``: lateral, ct)."""
    folder = data / "ood" / kind
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def blank_images(folder: Path) -> list[Path]:
    """Uniform and nearly uniform images (xscreen.export._scope_negatives.blank), seeds the head never saw."""
    from PIL import Image

    from xscreen.export._scope_negatives import blank

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(1000, 1000 + BLANK_IMAGES):
        paths.append(folder / f"blank-{seed}.png")
        Image.fromarray(blank(seed)).save(paths[-1])
    return paths


def bundled_test_rows(cxr3: Path) -> list[LabelledImage]:
    """The bundled model's cxr3 test films (tests/fixtures/bundled_model_test_split.csv), as split rows."""
    with open(BUNDLED_TEST_SPLIT, newline="") as fh:
        return [LabelledImage((cxr3 / row["file"]).resolve(), row["label"], row["group"], "test")
                for row in csv.DictReader(fh)]


def frontal(folder: Path, split_rows, limit: int | None) -> list[Path]:
    """Held-out films of ``folder`` (the split file's test rows under it), or all of them without one."""
    if not folder.is_dir():
        return []
    if split_rows is not None:
        root = folder.resolve()
        images = [img for img in split_rows if img.split == "test" and root in img.path.parents]
    else:
        images = read_labelled_folder(folder)
    return [img.path for img in stratified_sample(images, limit)]


def inverted(paths: list[Path], folder: Path) -> list[Path]:
    """Negatives of frontal films (255 - pixels, as a MONOCHROME1 film read as MONOCHROME2 looks)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    negatives = []
    for i, path in enumerate(paths):
        negatives.append(folder / f"negative-{i}-{path.stem}.png")
        Image.fromarray(255 - decode_radiograph(path)).save(negatives[-1])
    return negatives


def rates(model, paths: list[Path]) -> dict:
    """Out-of-scope rates: by the full check (as ``xscreen run``), and by the image score alone."""
    statuses, reasons = Counter(), Counter()
    for result in screen_files(paths, model):
        statuses[result.status] += 1
        if result.status == "out_of_scope":
            reasons[result.error.split("(")[0].split(":")[1].strip()] += 1
    decoded = statuses["ok"] + statuses["out_of_scope"]
    image_out = image_only = 0
    if model.has_scope:
        for path in paths:
            facts: dict = {}
            try:
                pixels = decode_radiograph(path, model.input_size, model.metadata.preprocessing, facts=facts)
            except DecodeError:
                continue
            batch = pixels[None, ..., None]
            outputs = model.predict_outputs(batch)
            image_only += 1
            image_out += image_reasons(model, batch, outputs, np.ones(1, bool),
                                       np.array([facts["colour"]]))[0] is not None
    return {
        "files": len(paths), "decoded": decoded, "errors": statuses["error"],
        "out_of_scope": statuses["out_of_scope"],
        "out_of_scope_rate": statuses["out_of_scope"] / decoded if decoded else None,
        "image_score_only_rate": image_out / image_only if image_only else None,
        "reasons": dict(reasons.most_common()),
    }


# wall: what a user waits. cpu: the calling thread's CPU time, which a busy machine does not inflate
# (waiting for a core is not counted); with one inference thread, all of the work runs in that thread.
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


def cost(model, film: np.ndarray, baseline=None, clock: str = "wall") -> dict:
    """ms per image of ``predict``, and of ``predict_outputs`` plus the scope decision, at two batch sizes.

    The calls alternate within one loop, so both see the same machine load, and the extra cost is
    the median of the paired differences. ``baseline``: the same network without the extra outputs
    (the model shipped before them), whose ``predict`` is today's latency; its difference includes
    the extra outputs' work inside the graph.
    """
    found = {}
    for batch in (1, DEFAULT_BATCH_SIZE):
        pixels = np.repeat(film[None, ..., None], batch, axis=0)
        screened = np.ones(batch, bool)

        def with_scope(pixels=pixels, screened=screened):
            return image_reasons(model, pixels, model.predict_outputs(pixels), screened, np.zeros(len(pixels)))

        calls = {"predict": lambda pixels=pixels: model.predict(pixels), "with_scope": with_scope}
        if baseline is not None:
            calls["baseline_predict"] = lambda pixels=pixels: baseline.predict(pixels)
        times = _interleaved_ms(calls, CLOCKS[clock])
        row = {f"{name}_ms": statistics.median(values) / batch for name, values in times.items()}
        row["extra_ms"] = _median_difference(times["with_scope"], times["predict"]) / batch
        if baseline is not None:
            row["extra_vs_baseline_ms"] = _median_difference(times["with_scope"], times["baseline_predict"]) / batch
        found[f"batch {batch}"] = row
    return found


def _interleaved_ms(calls: dict, clock=time.perf_counter_ns) -> dict[str, list[float]]:
    for call in calls.values():
        for _ in range(20):
            call()
    times = {name: [] for name in calls}
    for _ in range(COST_RUNS):
        for name, call in calls.items():
            started = clock()
            call()
            times[name].append((clock() - started) / 1e6)
    return times


def _median_difference(a: list[float], b: list[float]) -> float:
    return statistics.median(x - y for x, y in zip(a, b))


def _median_ms(call) -> float:
    return statistics.median(_interleaved_ms({"call": call})["call"])


def header_cost(path: Path) -> float:
    """ms the header rules add to decoding one DICOM: the rules on its already-read header (median)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return _median_ms(lambda: dicom_header_reason(ds))


def _without_weights(scope: dict | None) -> dict | None:
    """The model's scope metadata without its long number lists (class means, the head's weights)."""
    if scope is None:
        return None
    head = scope.get("head")
    found = {k: v for k, v in scope.items() if k not in ("class_means", "head")}
    if head:
        found["head"] = {k: v for k, v in head.items() if k not in ("weights", "bias")}
    return found


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scope_rates.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Scope check: out-of-scope rates and cost",
        "",
        f"Model `{report['model']}` (distance threshold {report['threshold']}"
        + (f"; scope head threshold {report['head_threshold']} on p(not frontal), fitted by "
           "`benchmarks/scope_head.py`: cross-validated rates in `scope_head.md`" if report.get("head_threshold")
           else "; no scope head") + f"), {report['machine']}. "
        f"Produced by `{report['command']}`.",
        "",
        "| set | files | decoded | out of scope (header + image) | image score alone | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["sets"].items():
        rate = "–" if row["out_of_scope_rate"] is None else f"{100 * row['out_of_scope_rate']:.1f} %"
        alone = "–" if row["image_score_only_rate"] is None else f"{100 * row['image_score_only_rate']:.1f} %"
        why = "; ".join(f"{k} {v}" for k, v in row["reasons"].items())
        lines.append(f"| {name} | {row['files']} | {row['decoded']} | {rate} | {alone} | {why} |")
    lines += ["", f"Cost clock: {report['clock']}.", "",
              "| ms per image (medians; extra: median of paired differences) | predict | predict + scope "
              "decision | extra | baseline predict | extra vs baseline |", "|---|---|---|---|---|---|"]
    for batch, row in report["cost"].items():
        base = (f"{row['baseline_predict_ms']:.3f} | {row['extra_vs_baseline_ms']:.3f}"
                if "baseline_predict_ms" in row else "– | –")
        lines.append(f"| {batch} | {row['predict_ms']:.3f} | {row['with_scope_ms']:.3f} | {row['extra_ms']:.3f} "
                     f"| {base} |")
    if report.get("baseline"):
        lines.append(f"\nBaseline: `{report['baseline']}`, the same network without the cam and scope outputs.")
    if report.get("header_rules_ms") is not None:
        lines.append(f"\nDICOM header rules: {report['header_rules_ms']:.3f} ms per file on top of decoding.")
    (out / "scope_rates.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--split-file", type=Path, default=None, help="split.csv of the model's training run")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="films per frontal set (stratified)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="the same network without the extra outputs, for the cost on top of today's latency")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: one per core)")
    parser.add_argument("--cost-only", action="store_true", help="measure the cost, not the rates")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: the thread's CPU time, robust on a loaded machine (use with --threads 1)")
    args = parser.parse_args()

    model = load_model(args.model or default_model_path(), threads=args.threads)
    baseline = None if args.baseline is None else load_model(args.baseline, threads=args.threads)
    split_rows = read_split_csv(args.split_file) if args.split_file else bundled_test_rows(args.data / "cxr3")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            "dicom-not-chest": dicom_not_chest(),
            "photos": photos(),
            "synthetic": synthetic(Path(tmp)),
            "cxr3-test": frontal(args.data / "cxr3", split_rows, args.limit),
            "nih-test" if args.split_file else "nih-all (incl. training films)":
                frontal(args.data / "nih", split_rows if args.split_file else None, args.limit),
            "fullres": frontal(args.data / "fullres", None, args.limit),
            "ood-lateral": ood(args.data, "lateral"),
            "ood-ct": ood(args.data, "ct"),
            "blank": blank_images(Path(tmp) / "blank"),
        }
        if not args.cost_only:
            sets["cxr3-test-inverted"] = inverted(sets["cxr3-test"], Path(tmp) / "inverted")
        results = {}
        for name, paths in sets.items():
            if paths and not args.cost_only:
                results[name] = rates(model, paths)
                print(name, json.dumps(results[name]))
        film = decode_radiograph(sets["cxr3-test"][0], model.input_size, model.metadata.preprocessing) \
            if sets["cxr3-test"] else (synthetic_film(0, model.input_size[0]) * 255).astype(np.uint8)
    chest_cr = package_folder("data_store", "data", "RG1_UNCR.dcm")
    report = {
        "model": str(model.path), "backend": model.backend, "threads": model.threads,
        "threshold": model.scope_threshold, "scope": _without_weights(model.metadata.scope),
        "head_threshold": None if model.scope_head is None else model.scope_head.threshold,
        "command": "python benchmarks/scope_rates.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {platform.python_version()}, {model.backend}, {model.threads} threads",
        "sets": results, "cost": cost(model, film, baseline, args.clock), "clock": args.clock,
        "baseline": None if baseline is None else str(baseline.path),
        "header_rules_ms": header_cost(chest_cr) if chest_cr and chest_cr.is_file() else None,
        "split_file": None if args.split_file is None else str(args.split_file),
    }
    write_report(report, args.out)
    print((args.out / "scope_rates.md").read_text())


if __name__ == "__main__":
    main()
