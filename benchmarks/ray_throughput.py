"""Throughput of ``xscreen run`` on the local engine against the Ray engine with 1 and 2 actors.

From the repository root, with ``pip install -e '.[ray]'``::

    nice -n 15 .venv/bin/python benchmarks/ray_throughput.py

On ``../shared/data/fullres`` (original-size JPEGs, listed again and again to at least 600 entries)
with the bundled int8 model, on this machine's local Ray instance. Steps, each timed apart:

* ``ray_start``: ``ray.init`` on this machine (paid once per session on a cluster, not per run);
* ``local``: :func:`run_screening` with 1 decoding + 1 inference thread (what one Ray actor runs)
  and with the defaults (one decoding and one inference thread per core);
* ``ray``: :func:`run_screening_on_ray` with 1 and 2 actors (1 CPU each), CSV gathered on the driver,
  and 2 actors writing Parquet;
* each configuration on a short list (the files once) and a long one (600 entries), the median of
  2 runs each, so that ``elapsed = fixed + per_file * n`` splits
  the cost of a run (actor start, model load) from the cost of a file; the Ray overhead per file is
  Ray's ``per_file`` with 1 actor minus the local engine's with the same threads.

Writes ``benchmarks/results/ray_throughput.json`` and ``.md``. Figures, not tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source checkout without installing

from xscreen.bench import hardware_fingerprint  # noqa: E402
from xscreen.engines import RAY_BATCH_SIZE, import_ray, run_screening_on_ray  # noqa: E402
from xscreen.runtime import default_model_path, load_model, run_screening  # noqa: E402

MIN_SCREENINGS = 600
RESULTS = REPO / "benchmarks" / "results"


def listed_inputs(folder: Path, at_least: int, scratch: Path) -> tuple[Path, Path, int]:
    """A short list (the files once) and a long one (repeated to ``at_least`` entries), as .txt files."""
    files = sorted(p.resolve() for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no images under {folder}")
    repeats = -(-at_least // len(files))
    # A run screens a path once, so the repeats are symlinks with names of their own.
    copies = scratch / "copies"
    copies.mkdir()
    entries = []
    for r in range(repeats):
        for i, f in enumerate(files):
            link = copies / f"r{r}_{i}{f.suffix}"
            link.symlink_to(f)
            entries.append(link)
    short, long = scratch / "short.txt", scratch / "long.txt"
    short.write_text("".join(f"{f}\n" for f in files))
    long.write_text("".join(f"{f}\n" for f in entries))
    return short, long, len(files)


def timed_runs(screen, targets: dict[str, Path], repeat: int) -> dict:
    """Median elapsed seconds per list, and the split into a fixed cost per run and a cost per file."""
    figures = {}
    for name, target in targets.items():
        runs = []
        for _ in range(repeat):
            summary = screen(target)
            runs.append((summary.elapsed_s, summary.screened, summary.errors))
        elapsed = statistics.median(r[0] for r in runs)
        figures[name] = {"files": runs[0][1], "errors": runs[0][2], "elapsed_s": elapsed,
                         "images_per_s": runs[0][1] / elapsed, "runs_s": [r[0] for r in runs]}
    (n1, t1), (n2, t2) = ((figures[k]["files"], figures[k]["elapsed_s"]) for k in ("short", "long"))
    per_file = (t2 - t1) / (n2 - n1)
    return {**figures, "per_file_ms": per_file * 1000, "fixed_s": t1 - per_file * n1,
            "steady_images_per_s": 1 / per_file}


def step_local(model_path: Path, targets: dict[str, Path], scratch: Path, repeat: int) -> dict:
    out = scratch / "local.csv"
    one_core = load_model(model_path, threads=1)
    defaults = load_model(model_path)  # one decoding and one inference thread per core
    return {
        "1 decode + 1 inference thread": timed_runs(
            lambda t: run_screening(t, one_core, out, workers=1), targets, repeat),
        "defaults": timed_runs(
            lambda t: run_screening(t, defaults, out), targets, repeat),
    }


def step_ray(model_path: Path, targets: dict[str, Path], scratch: Path, repeat: int) -> dict:
    model = load_model(model_path)
    figures = {}
    for actors in (1, 2):
        figures[f"{actors} actor{'s' * (actors > 1)}, CSV on the driver"] = timed_runs(
            lambda t, a=actors: run_screening_on_ray(t, model, scratch / "ray.csv", actors=a), targets, repeat)
    figures["2 actors, Parquet written by Ray"] = timed_runs(
        lambda t: run_screening_on_ray(t, model, scratch / "ray.parquet", actors=2), targets, repeat)
    return figures


def report_md(result: dict) -> str:
    lines = [
        "# Local engine against Ray (`benchmarks/ray_throughput.py`)", "",
        f"Measured {result['hardware']['date_utc']} on {result['hardware']['cpu_model']} "
        f"({result['hardware']['cores_usable']} usable cores), {result['inputs']['entries']} entries "
        f"({result['inputs']['files']} full-resolution JPEGs of `{result['inputs']['folder']}` repeated) and "
        f"{result['inputs']['files']} for the short list, model `{result['model']}`, Ray {result['ray_version']}, "
        f"Ray batch {result['ray_batch_size']} paths per actor call.", "",
        f"Conditions: {result['conditions']}", "",
        f"`ray.init` on this machine: {result['ray_start_s']:.1f} s (once per session).", "",
        "| engine | configuration | images/s, long list (whole run) | per file, steady | fixed cost per run |",
        "|---|---|---|---|---|",
    ]
    for engine in ("local", "ray"):
        for name, fig in result[engine].items():
            lines.append(f"| {engine} | {name} | {fig['long']['images_per_s']:.1f} | {fig['per_file_ms']:.2f} ms "
                         f"({fig['steady_images_per_s']:.0f} images/s) | {fig['fixed_s']:.1f} s |")
    overhead = result["overhead"]
    ray_long, local_long = (result[e][k]["long"] for e, k in (("ray", "1 actor, CSV on the driver"),
                                                               ("local", "1 decode + 1 inference thread")))
    whole_run_ms = (ray_long["elapsed_s"] - local_long["elapsed_s"]) / ray_long["files"] * 1000
    lines += ["", "Ray against the local engine with the same threads (1 actor; 1 decoding + 1 inference thread):",
              f"- whole run of {ray_long['files']} files: **{whole_run_ms:+.1f} ms per file** "
              f"({ray_long['elapsed_s']:.1f} s against {local_long['elapsed_s']:.1f} s), fixed start included;",
              f"- split by the fit: fixed cost per run **{overhead['fixed_s']:+.1f} s**, per file "
              f"**{overhead['per_file_ms']:+.2f} ms** ({overhead['ratio']:.2f}x the local time per file; a negative "
              "figure means the machine's noise is larger than Ray's cost per file).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fullres")
    parser.add_argument("--model", type=Path, default=None, help="[default: the bundled int8 model]")
    parser.add_argument("--entries", type=int, default=MIN_SCREENINGS, help="length of the long list")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure (median kept)")
    parser.add_argument("--conditions", default="", help="what else the machine was doing, for the report")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model_path = args.model or default_model_path()
    ray = import_ray()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="xscreen-ray-bench-") as scratch:
        scratch = Path(scratch)
        short, long, files = listed_inputs(args.data, args.entries, scratch)
        targets = {"short": short, "long": long}
        local = step_local(model_path, targets, scratch, args.repeat)
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
        ray_start_s = time.perf_counter() - started
        try:
            on_ray = step_ray(model_path, targets, scratch, args.repeat)
        finally:
            ray.shutdown()
    same_threads, one_actor = local["1 decode + 1 inference thread"], on_ray["1 actor, CSV on the driver"]
    result = {
        "hardware": hardware_fingerprint(),
        "conditions": f"{args.conditions} Load average (1 min) {load_before[0]:.1f} before, "
                      f"{os.getloadavg()[0]:.1f} after.".strip(),
        "inputs": {"folder": str(args.data), "files": files, "entries": local["defaults"]["long"]["files"]},
        "model": model_path.name, "ray_version": ray.__version__, "ray_batch_size": RAY_BATCH_SIZE,
        "ray_start_s": ray_start_s, "local": local, "ray": on_ray,
        "overhead": {"per_file_ms": one_actor["per_file_ms"] - same_threads["per_file_ms"],
                     "ratio": one_actor["per_file_ms"] / same_threads["per_file_ms"],
                     "fixed_s": one_actor["fixed_s"] - same_threads["fixed_s"]},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "ray_throughput.md").write_text(report_md(result))
    print(report_md(result))


if __name__ == "__main__":
    main()
