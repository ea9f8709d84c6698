"""``xscreen bench``: every model x thread count on one labelled set, one fresh process per row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime import ModelContractError, load_model
from ..runtime._labelled import (
    LabelledFolderError,
    LabelledImage,
    read_labelled_folder,
    read_split_csv,
    stratified_sample,
)
from ..runtime._model import BUNDLED_MODEL, BUNDLED_ONNX_MODEL, BUNDLED_SPLIT
from ._hardware import hardware_fingerprint
from ._measure import METHODS

SCHEMA_VERSION = 1
DISCLAIMER = (
    "Not a medical device. These are benchmark figures on the labelled images named above, not a "
    "measure of clinical performance; they hold only for data drawn like them."
)


class BenchError(Exception):
    """A bench that cannot run as asked; the message says what to change."""


class LabelMismatchError(BenchError):
    """The labelled data holds a class a model does not know."""


@dataclass
class BenchConfig:
    data: Path
    models: Sequence[Path]
    threads: Sequence[int] = (1,)
    runs: int = 100
    warmup: int = 10
    limit: int | None = None  # stratified sample of this many images
    split: str | None = None  # "train"/"val"/"test": from the folder layout or ``split_file``
    split_file: Path | None = None  # a CSV with file,split columns (``xscreen train`` writes split.csv)
    seed: int = 0
    batch_size: int | None = None  # None: what `xscreen run` uses
    workers: int | None = None
    # load_model keywords for every model (labels, input_scaling, negative_label, threshold): what a
    # model without xscreen metadata cannot say itself
    model_options: dict = field(default_factory=dict)


@dataclass
class BenchReport:
    """Everything ``bench.json`` holds; ``to_dict`` is that file."""

    hardware: dict
    data: dict
    settings: dict
    results: list[dict] = field(default_factory=list)

    def below_floor(self, floor: float) -> list[dict]:
        """Result rows whose macro-F1 is under ``floor``."""
        return [row for row in self.results if row["metrics"]["macro_f1"] < floor]

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "xscreen bench",
            "hardware": self.hardware,
            "data": self.data,
            "settings": self.settings,
            "methods": METHODS,
            "results": self.results,
            "disclaimer": DISCLAIMER,
        }


def select_images(images: list[LabelledImage], limit: int | None, seed: int = 0) -> list[LabelledImage]:
    """A class-stratified random sample of ``limit`` images (proportional, each class at least one)."""
    try:
        return stratified_sample(images, limit, seed)
    except LabelledFolderError as exc:
        raise BenchError(f"--limit {limit}: {exc}") from None


def read_split_file(split_file: Path, data: Path | None = None) -> dict[Path, str]:
    """Resolved path -> split from a CSV with ``file`` and ``split`` columns (see ``read_split_csv``).

    The bundled model's split names files from the data pool's root (``cxr3/covid/x.jpg``): they are
    found beside ``data``, wherever the pool lies."""
    bundled = Path(split_file).resolve() == BUNDLED_SPLIT.resolve() and data is not None
    root = Path(data).resolve().parent if bundled else None
    try:
        return {img.path: img.split for img in read_split_csv(split_file, root)}
    except LabelledFolderError as exc:
        raise BenchError(str(exc)) from None


# Where the shipped split comes from: the 0.2 build's own split.csv was lost and this one was recomputed.
BUNDLED_SPLIT_NOTE = (
    "reconstructed: recomputed from the cxr3 and nih manifests with xscreen train's split (seed 0, 80/10/10 by "
    "patient, tied patients to the first label); the 0.2 build's own split.csv was lost. Its sizes "
    "(train/val/test 9200/1153/1153) and test films per source and class equal the build's records (count "
    "difference 0)"
)


def bundled_split_file(config: BenchConfig) -> Path | None:
    """The bundled model's own split (shipped beside it) for ``--split`` without a split file, when a
    bundled model is benched on a folder without train/valid/test folders; BenchError when not shipped."""
    bundled = {BUNDLED_MODEL.resolve(), BUNDLED_ONNX_MODEL.resolve()}
    if config.split is None or config.split_file is not None or not any(
            Path(m).resolve() in bundled for m in config.models):
        return None
    if any(img.split for img in read_labelled_folder(config.data)):
        return None
    if not BUNDLED_SPLIT.is_file():
        raise BenchError(f"--split {config.split}: {config.data} has no train/valid/test folders and this install "
                         f"ships no split of the bundled model ({BUNDLED_SPLIT.name}; see MODEL_CARD.md): pass "
                         "--split-file")
    return BUNDLED_SPLIT


def labelled_images(config: BenchConfig) -> list[LabelledImage]:
    """The labelled images the bench scores: folder, then split, then stratified sample."""
    images = read_labelled_folder(config.data)
    if config.split_file is not None:
        splits = read_split_file(config.split_file, config.data)
        images = [
            LabelledImage(img.path, img.label, img.group, splits.get(img.path.resolve())) for img in images
        ]
        if all(img.split is None for img in images):
            raise BenchError(f"{config.split_file} names none of the images in {config.data}")
    if config.split is not None:
        found = sorted({img.split for img in images if img.split})
        if not found:
            raise BenchError(
                f"{config.data} has no train/valid/test folders: pass --split-file (e.g. runs/cxr3/split.csv)"
            )
        images = [img for img in images if img.split == config.split]
        if not images:
            raise BenchError(f"no image is in split {config.split!r}; splits found: {', '.join(found)}")
    return select_images(images, config.limit, config.seed)


def options_per_model(models: Sequence[Path], model_options: dict) -> dict[Path, dict]:
    """The assumption options (--labels, --input-scaling, --negative-label, --threshold) for each model.

    They apply to every model, except in a mix of models with and without xscreen metadata: then only
    to the models without it (those with it say their labels and scaling themselves)."""
    if not model_options:
        return {path: {} for path in models}
    bare = []
    for path in models:
        try:
            load_model(path)
        except ModelContractError as exc:
            if "carries no xscreen metadata" not in str(exc):
                raise
            bare.append(path)
    if bare and len(bare) < len(models):
        return {path: (model_options if path in bare else {}) for path in models}
    return {path: model_options for path in models}


def check_labels(models: Sequence[Path], data_labels: set[str], model_options: dict | None = None) -> list[dict]:
    """Load each model once (cheap) to read its labels; refuse data classes a model does not know.

    ``model_options``: load_model keywords per model path (see ``options_per_model``)."""
    described = []
    for path in models:
        model = load_model(path, **(model_options or {}).get(path, {}))
        unknown = sorted(data_labels - set(model.metadata.labels))
        if unknown:
            raise LabelMismatchError(
                f"{path}: the data has class(es) {', '.join(unknown)} that this model does not know "
                f"(its labels: {', '.join(model.metadata.labels)}). Bench it on data with its classes, "
                "or rename the class folders / manifest labels to match."
            )
        described.append({"path": Path(path), "data_summary": model.metadata.data_summary,
                          "options": (model_options or {}).get(path, {}),
                          "trained_on": trained_on_folders(model.metadata)})
    return described


def trained_on_folders(metadata) -> list[str]:
    """The labelled folders a model was trained on, by name, as its metadata records them: ``extra
    ["trained_on"]``, else the start of the data summary ``xscreen train`` writes (``cxr3 + nih: ...``)."""
    if metadata.extra.get("trained_on"):
        return list(metadata.extra["trained_on"])
    summary = metadata.data_summary or ""
    if ":" not in summary:
        return []
    return [name.strip() for name in summary.split(":", 1)[0].split(" + ") if name.strip()]


def training_films_warning(name: str, trained_on: list[str], config: BenchConfig) -> str | None:
    """One line when DATA is a folder the model was trained on and the bench is not restricted to a
    held-out split (``--split test`` with a split file): its figures then include training films."""
    folder = Path(config.data).resolve().name
    if folder not in trained_on or (config.split == "test" and config.split_file is not None):
        return None
    return (f"{name} was trained on films of {folder}/ (its metadata: trained on {' + '.join(trained_on)}); "
            f"these figures include its training films and overstate it: bench its held-out films with "
            f"--split test --split-file SPLIT (the split.csv of its training run)")


def run_bench(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every model at every thread count on the labelled data; see :mod:`xscreen.bench`."""
    if not config.models:
        raise BenchError("no model given: pass --model at least once")
    if not config.threads or min(config.threads) < 1:
        raise BenchError(f"thread counts must be positive, got {list(config.threads)}")
    config.split_file = config.split_file or bundled_split_file(config)
    images = labelled_images(config)
    counts = Counter(img.label for img in images)
    model_options = {k: v for k, v in config.model_options.items() if v is not None}
    paths = list(dict.fromkeys(Path(m) for m in config.models))
    models = check_labels(paths, set(counts), options_per_model(paths, model_options))
    names = _display_names([m["path"] for m in models])
    warnings = {n: w for n, m in zip(names, models) if (w := training_films_warning(n, m["trained_on"], config))}
    report = BenchReport(
        hardware=hardware_fingerprint(),
        data={
            "path": str(config.data),
            "split": config.split,
            "split_file": None if config.split_file is None else str(config.split_file),
            "split_note": (BUNDLED_SPLIT_NOTE if config.split_file is not None
                           and Path(config.split_file).resolve() == BUNDLED_SPLIT.resolve() else None),
            "limit": config.limit,
            "seed": config.seed,
            "n_images": len(images),
            "per_class": dict(sorted(counts.items())),
            "readme": _data_readme(config.data),
            "model_training_data": {n: m["data_summary"] for n, m in zip(names, models) if m["data_summary"]},
            "training_films_warnings": warnings,
        },
        settings={
            "threads": list(config.threads), "runs": config.runs, "warmup": config.warmup,
            "batch_size": config.batch_size, "workers": config.workers, "model_options": model_options,
            "model_options_applied_to": [n for n, m in zip(names, models) if m["options"]],
            "isolation": "one fresh Python process per model x threads",
        },
    )
    task = {
        "files": [str(img.path) for img in images],
        "truth": [img.label for img in images],
        "runs": config.runs, "warmup": config.warmup,
        "batch_size": config.batch_size, "workers": config.workers, "model_options": model_options,
    }
    for name, model in zip(names, models):
        for threads in config.threads:
            where = f"{name} @ {threads} thread{'s' if threads > 1 else ''}"
            if progress:
                progress(f"measuring {where}: {len(images)} images")
            row = _measure_in_fresh_process({**task, "model": str(model["path"]), "threads": threads,
                                             "model_options": model["options"]})
            report.results.append({"model": name, "path": str(model["path"]),
                                   "on_training_films": name in warnings, **row})
            if progress:
                progress(f"{where}: p50 {row['latency_ms']['p50']:.2f} ms, {row['throughput_ips']:.1f} images/s, "
                         f"macro-F1 {row['metrics']['macro_f1']:.4f}, peak {row['peak_rss_mb']:.0f} MB")
    return report


def _measure_in_fresh_process(task: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="xscreen-bench-") as tmp:
        task_file, result_file = Path(tmp, "task.json"), Path(tmp, "result.json")
        task_file.write_text(json.dumps(task))
        env = dict(os.environ)
        # The child imports this very xscreen even when it is not installed (a source checkout).
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "xscreen.bench._worker", str(task_file), str(result_file)],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0 or not result_file.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BenchError(f"measuring {task['model']} at {task['threads']} threads failed:\n{tail}")
        row = json.loads(result_file.read_text())
    row["wall_s"] = time.perf_counter() - started
    return row


def _display_names(paths: list[Path]) -> list[str]:
    """File names, or the paths as given where two models share a file name."""
    clashes = {n for n, c in Counter(p.name for p in paths).items() if c > 1}
    return [str(p) if p.name in clashes else p.name for p in paths]


def _data_readme(data: Path) -> str | None:
    for name in ("README.md", "README.txt", "README"):
        for folder in (Path(data), Path(data).parent):
            if (folder / name).is_file():
                return str(folder / name)
    return None
