"""The long fuzz run: coverage-guided (atheris) over the image decoder, mutation over the model loader.

    nice -n 10 .venv/bin/python benchmarks/fuzz.py                     # 5 + 5 minutes
    nice -n 10 .venv/bin/python benchmarks/fuzz.py --seconds 60        # 1 + 1 minutes

Steps:

* ``fuzz_images``: atheris (libFuzzer) runs ``decode_radiograph`` on inputs grown from the seed files of
  ``tests/fuzzing.py`` (PNG 8/16-bit, JPEG, TIFF, BMP, DICOM), in a child process, with Pillow and xscreen
  instrumented for coverage, a 2 GB memory limit and a 10 s limit per input. An outcome other than pixels or
  a DecodeError, a native crash, a time-out or the memory limit stops it and is a finding (its input is
  kept in ``--work``). Without atheris (``pip install atheris``), the same seeds are mutated at random.
* ``fuzz_models``: the fixture models, truncated and bit-flipped at random (seeded), loaded and run once in
  the worker process of ``tests/fuzzing.py``: a crash or hang is counted and the worker restarted.

Writes ``benchmarks/results/fuzz.json`` and ``.md``: executions, findings by kind, what was fixed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
RESULTS = Path(__file__).parent / "results"


def atheris_target(corpus: Path, args: list[str]) -> None:
    """The child process: libFuzzer over the decoder (never returns)."""
    import atheris

    with atheris.instrument_imports(include=["PIL", "xscreen", "pydicom"]):
        from fuzzing import SIZE

        from xscreen.runtime import DecodeError, decode_radiograph
    case = Path(tempfile.mkdtemp(prefix="xscreen-atheris-"))

    def one_input(data: bytes) -> None:
        path = case / ("case.dcm" if data[128:132] == b"DICM" else "case")
        path.write_bytes(data)
        try:
            decode_radiograph(path, SIZE, scope_check=bool(data[-1:] and data[-1] & 1))
        except DecodeError:
            pass

    atheris.Setup([sys.argv[0], *args, str(corpus)], one_input)
    atheris.Fuzz()


def fuzz_images(work: Path, seconds: int) -> dict:
    from fuzzing import seed_images

    corpus = work / "image-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seed_images().items():
        (corpus / name).write_bytes(data)
    try:
        import atheris  # noqa: F401
    except ImportError:
        return fuzz_images_at_random(work, seconds)
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, "--atheris-child", str(corpus), "--", f"-max_total_time={seconds}",
         "-rss_limit_mb=2048", "-timeout=10", f"-artifact_prefix={work}/finding-", "-print_final_stats=1"],
        capture_output=True, text=True)
    log = child.stderr
    (work / "atheris.log").write_text(log)
    runs = re.search(r"Done (\d+) runs", log) or re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    findings = sorted(p.name for p in work.glob("finding-*"))
    return {"engine": "atheris (libFuzzer, coverage-guided)", "seconds": round(time.perf_counter() - started),
            "executions": int(runs.group(1)) if runs else None, "exit_code": child.returncode,
            "findings": findings, "last_lines": log.strip().splitlines()[-6:]}


def fuzz_images_at_random(work: Path, seconds: int) -> dict:
    from fuzzing import decode_case, mutate, seed_images

    seeds, rng, counts, findings = seed_images(), random.Random(0), Counter(), []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        name = rng.choice(sorted(seeds))
        ops = [(rng.randrange(5), rng.randrange(1 << 20), rng.randrange(256)) for _ in range(rng.randrange(1, 5))]
        path = work / f"case{Path(name).suffix}"
        path.write_bytes(mutate(seeds[name], ops))
        try:
            counts[decode_case(path, rng.random() < 0.5).partition(":")[0]] += 1
        except Exception as exc:  # a finding: anything but pixels or a DecodeError
            findings.append((name, ops, f"{type(exc).__name__}: {exc}"))
    return {"engine": "random mutation (atheris not installed)", "seconds": seconds,
            "executions": sum(counts.values()) + len(findings), "outcomes": dict(counts), "findings": findings}


def fuzz_models(work: Path, seconds: int) -> dict:
    from fuzzing import ModelLoader, mutate, seed_models

    seeds, rng, counts, findings = seed_models(), random.Random(1), Counter(), []
    loader = ModelLoader(work)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        name = rng.choice(sorted(seeds))
        ops = [(0 if rng.random() < 0.2 else rng.choice((1, 2)), rng.randrange(1 << 20), rng.randrange(256))
               for _ in range(rng.randrange(1, 4))]
        outcome = loader.load(mutate(seeds[name], ops), Path(name).suffix)
        counts[(Path(name).suffix, outcome.kind)] += 1
        if outcome.kind not in ("ok", "clear"):
            findings.append((name, ops, outcome.kind, outcome.detail[:200]))
    loader.close()
    return {"engine": "random truncation and bit flips, one worker process", "seconds": seconds,
            "executions": sum(counts.values()),
            "outcomes": {f"{suffix} {kind}": n for (suffix, kind), n in sorted(counts.items())}, "findings": findings}


def render(report: dict) -> str:
    images, models = report["images"], report["models"]
    lines = ["# Fuzzing the decoder and the model loader", "",
             f"`nice -n 10 .venv/bin/python benchmarks/fuzz.py --seconds {report['seconds']}` ({report['machine']}).",
             "", "| target | engine | seconds | executions | findings |", "|---|---|---|---|---|",
             f"| image decoder (PNG, JPEG, TIFF, BMP, DICOM) | {images['engine']} | {images['seconds']} | "
             f"{images['executions'] or 0:,} | {len(images['findings'])} |",
             f"| model loader (.tflite, .onnx) | {models['engine']} | {models['seconds']} | "
             f"{models['executions']:,} | {len(models['findings'])} |", "",
             "Model outcomes: " + ", ".join(f"{k}: {v:,}" for k, v in models["outcomes"].items()) + ".", "",
             "Found and fixed before this run (each a case in `tests/test_fuzz.py`):", ""]
    lines += [f"- {fix}" for fix in FIXED]
    lines += ["", "Seen and not fixed yet:", ""] + [f"- {note}" for note in KNOWN_OPEN]
    if images["findings"] or models["findings"]:
        lines += ["", "Findings of this run:", ""]
        lines += [f"- image: {f}" for f in images["findings"]] + [f"- model: {f}" for f in models["findings"]]
    return "\n".join(lines) + "\n"


FIXED = [
    "a bit-flipped int8 `.tflite` (zero point -536,871,040) segfaulted the process in `allocate_tensors` "
    "(ai-edge-litert 2.3): the graph is now checked before the interpreter sees it (`_tflite_check.py`); "
    "1 crash in the first 4,000 model cases",
    "damaged `.tflite`/`.onnx` files that load but fail when run raised a RuntimeError (a traceback from "
    "`xscreen run`): now one ModelContractError line, exit 2; 18 in the first 4,000 model cases",
    "onnxruntime printed `EP Error ... Falling back` lines to standard output for damaged `.onnx` files",
    "a DICOM whose transfer syntax UID is no transfer syntax (one flipped bit: `2.2.840.10008.1.2.1`) raised "
    "pydicom's ValueError out of the decoder: now a DecodeError row (atheris, after 2,599 executions of the "
    "first 5-minute run)",
    "a `.tflite` whose shape became [268435457, 3] float32 (one flipped bit) made `allocate_tensors` ask for "
    "3.2 GB and stall past the 20 s limit: tensors over 512 MiB are refused (1 in 15,118 model cases of that run)",
    "a DICOM tag with the unknown VR `UK`, read by the header rules under the scope check, raised pydicom's "
    "NotImplementedError: now `unreadable DICOM header` (atheris, after 25,583 executions of the second run)",
]
# Seen and not fixed yet: what the lead needs to know.
KNOWN_OPEN = [
    "`scoped_int8.tflite` with two bytes changed (byte 2584: 27 to 11, which looks like an operator's builtin"
    " options type, so the runtime reads one options table as another) loads, then aborts the process "
    "(SIGABRT) in `allocate_tensors` when it is resized to batch 1: 1 in 40,499 model cases of the second "
    "run, in the worker, counted. The runtime still aborts on it (the worker runs with "
    "`XSCREEN_NO_MODEL_PROBE=1`, so it measures the runtime behind the structural check), but `load_model` "
    "now opens each new `.tflite` once in a child process first (`xscreen/runtime/_probe.py`): this file, and"
    " this run's SIGABRT finding below, are one ModelContractError line (`the TFLite runtime aborted "
    "(SIGABRT) while opening it in a check process`), exit 2 from `xscreen run` and `xscreen info` "
    "(`tests/test_model_probe.py`)",
    "two SIGSEGVs of the third run (`scoped_int8.tflite` with byte 2836 4 to 0, and with bytes 1284 and 2801 "
    "changed) do not reproduce alone: each alone is one clear error (STRIDED_SLICE fails to prepare). An "
    "earlier case in the same worker process must have corrupted its memory without crashing it, so a damaged"
    " model can leave the runtime unsafe after a clear error; not traced yet. Since the child-process probe, "
    "a file that fails with a clear error there is never opened in xscreen's own process; one that corrupts "
    "memory and still runs cleanly in the child is not caught",
]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--atheris-child":
        atheris_target(Path(sys.argv[2]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="per target (two targets)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "xscreen-fuzz")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import os
    import platform
    report = {"seconds": args.seconds,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "images": fuzz_images(args.work, args.seconds), "models": fuzz_models(args.work, args.seconds)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (RESULTS / "fuzz.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
