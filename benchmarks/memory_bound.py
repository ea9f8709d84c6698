"""Peak memory of ``xscreen run`` on a folder of huge films, and whether the answers stayed the same.

    nice -n 10 .venv/bin/python benchmarks/memory_bound.py                        # this checkout
    git archive 755f66f xscreen | tar -x -C /tmp/before                            # the code before the bound
    nice -n 10 .venv/bin/python benchmarks/memory_bound.py --baseline-src /tmp/before

Steps, each its own function:

* ``write_films`` (in a child process): two 10000x11000 16-bit PNGs (the demo's synthetic film drawn large,
  12 bits used, as a digitiser writes) in ``huge/``, and normal films in ``normal/``: 16-bit PNGs of
  2000x2500 and 3000x3000 and an 8-bit 2048x2048 PNG;
* ``peak_rss``: ``python -m xscreen run FOLDER --out OUT`` at default settings (bundled model, one
  decoding thread per core, batch 4) in a child process; its peak resident memory from ``os.wait4`` (this
  script imports nothing large, so the child's memory before ``exec`` adds a few MB at most);
* ``compare``: with ``--baseline-src``, the same runs with that source tree first on ``PYTHONPATH``, and
  the largest difference in any probability, per folder.

Writes ``benchmarks/results/memory_bound.json`` and ``.md``. The target: at most 600 MB for ``huge/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
TARGET_MB = 600
HUGE = (10_000, 11_000)  # width, height
NORMAL = {"sixteen_2000x2500.png": ((2000, 2500), 16), "sixteen_3000x3000.png": ((3000, 3000), 16),
          "eight_2048x2048.png": ((2048, 2048), 8)}


def draw_film(seed: int, size: tuple[int, int], bits: int):
    """The demo's synthetic film drawn at ``size`` (width, height), as a 16-bit (12 used) or 8-bit grey image."""
    import numpy as np
    from PIL import Image

    from xscreen.runtime._demo import synthetic_film

    small = Image.fromarray(np.clip(synthetic_film(seed, 1024), 0, 1).astype(np.float32), mode="F")
    film = np.asarray(small.resize(size, Image.Resampling.BILINEAR))
    if bits == 16:
        return Image.fromarray(np.rint(film * 4000 + 50).astype(np.uint16) << 4)
    return Image.fromarray(np.rint(film * 255).astype(np.uint8))


def write_films(folder: Path) -> None:
    """Draw the films that are not there yet (large: run it in a child process, see :func:`main`)."""
    (folder / "huge").mkdir(parents=True, exist_ok=True)
    (folder / "normal").mkdir(parents=True, exist_ok=True)
    for seed in (1, 2):
        path = folder / "huge" / f"film{seed}_10000x11000_16bit.png"
        if not path.exists():
            draw_film(seed, HUGE, 16).save(path)
    for seed, (name, (size, bits)) in enumerate(NORMAL.items(), 3):
        if not (folder / "normal" / name).exists():
            draw_film(seed, size, bits).save(folder / "normal" / name)


def peak_rss(src: Path, target: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of ``xscreen run target --out out`` run from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "xscreen", "run", str(target), "--out", str(out), "--overwrite"],
                             env=env, cwd=out.parent,  # not this checkout: `-m` puts the working folder first
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, seconds, child.returncode  # ru_maxrss is in KiB on Linux


def read_rows(out: Path) -> dict[str, dict]:
    with open(out, newline="") as fh:
        return {Path(row["path"]).name: row for row in csv.DictReader(fh)}


def largest_difference(a: dict[str, dict], b: dict[str, dict]) -> float:
    """Largest absolute difference of any probability between two runs' rows for the same files."""
    worst = 0.0
    for name, row in a.items():
        for column, value in row.items():
            if column.startswith("prob_") and value and b[name][column]:
                worst = max(worst, abs(float(value) - float(b[name][column])))
    return worst


def measure(src: Path, folder: Path, tag: str) -> dict:
    figures = {}
    for sub in ("huge", "normal"):
        out = folder / f"{tag}-{sub}.csv"
        mb, seconds, code = peak_rss(src, folder / sub, out)
        rows = read_rows(out) if code == 0 else {}
        figures[sub] = {"peak_rss_mb": round(mb), "seconds": round(seconds, 1), "exit_code": code,
                        "rows": {name: {k: v for k, v in row.items() if k != "path"} for name, row in rows.items()}}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/xscreen-memory-bound"))
    parser.add_argument("--baseline-src", type=Path, help="a source tree holding xscreen/ before the bound")
    parser.add_argument("--write-films-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_films_only:
        write_films(args.work)
        return
    subprocess.run([sys.executable, __file__, "--work", str(args.work), "--write-films-only"], check=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "huge_files_mb": [round(p.stat().st_size / 2**20, 1) for p in sorted((args.work / "huge").iterdir())],
              "target_mb": TARGET_MB, "after": measure(ROOT, args.work, "after")}
    if args.baseline_src:
        report["before"] = measure(args.baseline_src, args.work, "before")
        report["largest_probability_difference"] = {
            sub: largest_difference(report["after"][sub]["rows"], report["before"][sub]["rows"])
            for sub in ("huge", "normal")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory_bound.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "memory_bound.md").write_text(render(report))
    print(render(report))


def render(report: dict) -> str:
    lines = ["# Peak memory of `xscreen run` on huge films", "",
             "`nice -n 10 .venv/bin/python benchmarks/memory_bound.py --baseline-src /tmp/before` "
             f"({report['machine']}; default settings: bundled model, batch 4, one decoding thread per core).", "",
             f"`huge/`: two 10000x11000 16-bit PNGs ({' and '.join(f'{mb} MB' for mb in report['huge_files_mb'])} "
             "on disk); `normal/`: 16-bit PNGs of 2000x2500 and 3000x3000 and an 8-bit 2048x2048 PNG.", "",
             "| folder | code | peak RSS (MB) | seconds | exit code |", "|---|---|---|---|---|"]
    for tag in ("before", "after"):
        for sub in ("huge", "normal"):
            if tag in report:
                f = report[tag][sub]
                lines.append(f"| {sub} | {tag} | {f['peak_rss_mb']:,} | {f['seconds']} | {f['exit_code']} |")
    lines.append("")
    lines.append(f"Target: at most {report['target_mb']} MB for `huge/`: "
                 + ("met." if report["after"]["huge"]["peak_rss_mb"] <= report["target_mb"] else "NOT met."))
    if "largest_probability_difference" in report:
        diff = report["largest_probability_difference"]
        lines.append(f"Largest difference in any probability, after vs before: huge {diff['huge']:.6f}, "
                     f"normal {diff['normal']:.6f} (rows are written to 6 decimals).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
