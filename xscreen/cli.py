"""The ``xscreen`` command line: each command parses, calls one library function, renders with rich.

Exit codes, for every command: 0 done; 1 with ``--strict`` when a file failed; 2 bad usage, bad
model file or missing extra (a one-line message, never a traceback: raise :class:`CommandError`).
New commands are ``@main.command()`` functions appended at the end of this file, or commands of their
own module registered at its end (``serve``, ``watch``).
"""

from __future__ import annotations

import errno
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from ._console import DISCLAIMER, ProgressReporter, bench_table, print_run_summary
from ._options import (
    MODEL_HELP,
    ModelPathType,
    _parse_labels,
    assumption_options,
    backend_option,
    labels_option,
    model_option,
    negative_label_option,
    parse_thread_counts,
    rename_option,
    threshold_option,
)
from .engines import CONNECT_TIMEOUT_S
from .export._export import ExportConfig
from .export._formats import FORMATS as EXPORT_FORMATS
from .export._train import TrainConfig
from .report import ReportOptionError, ResultsFileError, report_from_results, screen_and_report
from .runtime import (
    DEFAULT_BATCH_SIZE,
    OUTPUT_SUFFIXES,
    MissingRuntimeError,
    ModelContractError,
    NoInputsError,
    OutputExistsError,
    OutputInUseError,
    ResumeError,
    ScreeningModel,
    available_backends,
    default_model_path,
    format_megabytes,
    load_model,
)
from .runtime._calibration import describe_calibration
from .runtime._contract import INPUT_SCALINGS
from .runtime._decode import PREPROCESSINGS
from .runtime._discover import ListFileError, check_target
from .runtime._scope import describe_scope


class CommandError(click.ClickException):
    """Bad usage, a bad model file or a missing extra: ``Error: <message>`` on stderr, exit 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xscreen")
def main() -> None:
    """Screen chest X-rays (healthy / pneumonia / COVID-19) on CPUs and edge devices.

    Not a medical device.
    """


def open_model(path: Path | None, *, labels: Sequence[str] | None = None, rename: dict[str, str] | None = None,
               threads: int | None = None, backend: str | None = None, quiet: bool = False,
               **assumptions) -> ScreeningModel:
    """Load a model (the bundled one when ``path`` is None), turning every load failure into exit 2
    and saying in one line (unless ``quiet``) what the runtime had to do differently to open it.

    ``assumptions``: input_scaling, negative_label, threshold, as ``load_model`` takes them.
    """
    try:
        model = load_model(path or default_model_path(), labels=labels, rename=rename, threads=threads,
                           backend=backend, **assumptions)
    except (ModelContractError, MissingRuntimeError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    if model.notice and not quiet:
        Console(stderr=True).print(f"[yellow]warning: {escape(model.notice)}[/]", highlight=False, soft_wrap=True)
    return model


@main.command()
@click.argument("target", type=click.Path(path_type=Path, allow_dash=True))
@model_option
@labels_option
@rename_option
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("results.csv"), show_default=True,
              help=f"Result file: {' or '.join(OUTPUT_SUFFIXES)} by its suffix (or a .parquet folder on Ray).")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Inference threads [default: one per core]; with --engine ray, CPUs per actor [default: 1].")
@click.option("--workers", type=click.IntRange(min=0), metavar="N",
              help="Decoding threads; 0 decodes in the main thread [default: one per core]. "
                   "With --engine ray, actors [default: the cluster's CPUs / --threads].")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
              help=f"Images per batch [default: {DEFAULT_BATCH_SIZE}].")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out and screen only the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--follow-symlinks", is_flag=True, help="Enter symlinked folders and files pointing outside TARGET.")
@click.option("--strict", is_flag=True,
              help="Exit with status 1 when any file could not be screened (error or out of scope).")
@click.option("--no-scope-check", "no_scope_check", is_flag=True,
              help="Screen every file, even those whose DICOM header or image says it is not a frontal chest film.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--heatmaps", "heatmap_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a heatmap PNG of each flagged film into this folder.")
@click.option("--heatmaps-all", is_flag=True, help="With --heatmaps: a PNG for every screened film.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a self-contained HTML report (summary, every film, flagged films' heatmaps).")
@backend_option
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="Screen in this process, or on a Ray cluster (pip install 'xscreen[ray]'; --out may be .parquet).")
@click.option("--address", metavar="ADDR",
              help="Ray cluster to join: HOST:PORT or auto [default: RAY_ADDRESS, else a new local Ray for this run].")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=CONNECT_TIMEOUT_S,
              show_default=True, metavar="S",
              help="Give up joining a Ray cluster (--address, RAY_ADDRESS) after S seconds.")
@assumption_options
@click.option("--report-note", "report_notes", multiple=True, hidden=True)  # what xscreen demo tells the report
def run(target: Path, model_path: Path | None, labels, rename, out: Path, threads, workers, batch_size,
        resume: bool, overwrite: bool, follow_symlinks: bool, strict: bool, no_scope_check: bool, quiet: bool,
        heatmap_dir: Path | None, heatmaps_all: bool, report: Path | None, backend,
        engine: str, address: str | None, connect_timeout: float,
        input_scaling=None, negative_label=None, threshold=None, report_notes: tuple[str, ...] = ()) -> None:
    """Screen every image in TARGET: a folder (searched recursively), one file, or a list of paths
    (.txt, one per line; .csv with a path column; - for standard input).

    Reads PNG (8/16-bit), JPEG and DICOM (also without extension) files and writes one row per
    file to --out: path, status (ok, error, out_of_scope), prediction, prob_<label> per class, flag
    (needs review), margin (P(not healthy) - threshold), review_reason, scope_score, error (why a
    file was not screened); and OUT.meta.json, the model that wrote it.
    """
    if resume and overwrite:
        raise CommandError("--resume and --overwrite contradict each other: pick one")
    if address and engine != "ray":
        raise CommandError("--address names a Ray cluster: add --engine ray")
    ray_engine = _ray_engine() if engine == "ray" else None
    suffixes = ray_engine.RAY_OUTPUT_SUFFIXES if ray_engine else OUTPUT_SUFFIXES
    if out.suffix.lower() not in suffixes:
        raise CommandError(f"--out {out}: use a {' or '.join(suffixes)} file")
    if out.is_dir() != (out.suffix.lower() == ".parquet" and out.exists()):
        raise CommandError(f"--out {out}: a .parquet output is a folder, a {' or '.join(OUTPUT_SUFFIXES)} one a file")
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CommandError(f"--out {out}: {blocking} is a file, not a folder")
    try:
        check_target(target)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    model = open_model(model_path, labels=labels, rename=rename, threads=threads, backend=backend, quiet=quiet,
                       input_scaling=input_scaling, negative_label=negative_label, threshold=threshold)
    err = Console(stderr=True)
    reporter = None if quiet else ProgressReporter(err)
    user_errors = (NoInputsError, ResumeError, OutputExistsError, OutputInUseError, ListFileError, ReportOptionError,
                   ModelContractError, *((ray_engine.RayEngineError,) if ray_engine else ()))
    try:
        if ray_engine:
            if heatmap_dir or report:
                raise CommandError("--heatmaps and --report need the local engine: drop them or --engine ray")
            summary = ray_engine.run_screening_on_ray(
                target, model, out, address=address, actors=workers, threads=threads, backend=backend,
                batch_size=batch_size, resume=resume, overwrite=overwrite, follow_symlinks=follow_symlinks,
                progress=reporter, scope_check=not no_scope_check, connect_timeout_s=connect_timeout,
                notice=None if quiet else lambda line: err.print(escape(line), highlight=False),
            )
        else:
            summary = screen_and_report(
                target, model, out, heatmap_dir=heatmap_dir, every_film=heatmaps_all, report=report,
                report_notes=report_notes, resume=resume,
                overwrite=overwrite, workers=workers, batch_size=batch_size, follow_symlinks=follow_symlinks,
                progress=reporter, scope_check=not no_scope_check,
            )
    except user_errors as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the target or the output cannot be read or written
        kept = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # rows are flushed batch by batch: what was written stays
            where = "" if exc.filename and Path(exc.filename) == out else f" in {out}"
            kept = (f"; the rows written so far are kept{where}: free some space and run the same command "
                    "with --resume to continue")
        raise CommandError(f"{exc.filename or out}: {exc.strerror or exc}{kept}") from None
    except KeyboardInterrupt:
        err.print(f"\ninterrupted: the rows written so far are in {escape(str(out))}; "
                  "finish with the same command and --resume")
        sys.exit(130)
    finally:
        if reporter is not None:
            reporter.close()
    for line in summary.warnings:
        err.print(f"[yellow]warning[/] {escape(line)}", highlight=False)
    if not quiet:
        print_run_summary(Console(), summary, model)
        for what, path in (("heatmaps", heatmap_dir), ("report", report)):
            if path is not None:
                Console().print(f"{what}: {escape(str(path))}", highlight=False)
    if strict and (summary.errors or summary.out_of_scope):
        sys.exit(1)


def _ray_engine():
    """The Ray engine module, imported only for --engine ray; exit 2 with the pip command without Ray."""
    from . import engines

    try:
        engines.import_ray()
    except engines.MissingRayError as exc:
        raise CommandError(str(exc)) from None
    return engines


@main.command()
@click.argument("model_path", metavar="[MODEL]", required=False, type=ModelPathType())
@labels_option
@rename_option
@backend_option
@assumption_options
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(model_path: Path | None, labels, rename, backend, as_json: bool, input_scaling=None, negative_label=None,
         threshold=None) -> None:
    """Describe MODEL (a file, or bundled / bundled-onnx; default: bundled): labels, input, threshold, runtime."""
    description = open_model(model_path, labels=labels, rename=rename, backend=backend, input_scaling=input_scaling,
                             negative_label=negative_label, threshold=threshold).info()
    description["installed_runtimes"] = available_backends()
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    meta = description["metadata"]
    table = Table(title=f"xscreen model: {escape(description['path'])}", title_justify="left",
                  show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "file": f"{format_megabytes(description['file_size_bytes'])}, {description['format']}",
        "runtime": description["backend"],
        "labels": ", ".join(description["labels"]),
        "input": _tensor_line(description["input"]),
        "output": _tensor_line(description["output"]),
        "batch": description["batch"],
        "screening flag": _flag_line(description),
        "heatmaps": "yes (class-activation maps)" if description["heatmaps"] else "no",
        "scope check": describe_scope(description["scope"]),
        "site calibration": describe_calibration(description["calibration"]),
        "preprocessing": description["preprocessing"],
        "input scaling": description["input_scaling"] + (
            f" (the file's input; inside the graph: {meta['extra']['wrapping']['description']})"
            if meta["extra"].get("wrapping") else ""),
        "assumed": description["assumptions"] or "nothing: the file carries xscreen metadata",
        "model version": meta["model_version"],
        "exported": meta["exported_at"],
        "exported by": meta["xscreen_version"] and f"xscreen {meta['xscreen_version']}",
        "source sha256": meta["source_sha256"],
        "trained on": meta["data_summary"],
        "installed runtimes": "; ".join(
            f"{fmt}: {', '.join(names) or 'none'}" for fmt, names in description["installed_runtimes"].items()
        ),
    }
    for key, value in rows.items():
        table.add_row(key, escape(str(value)) if value is not None else "[dim]unknown[/]")
    Console().print(table)


def _tensor_line(tensor: dict) -> str:
    shape = "x".join(str(d) for d in tensor["shape"])
    quant = tensor["quantization"]
    quantization = f", quantized: scale {quant['scale']:g}, zero point {quant['zero_point']}" if quant else ""
    return f"{tensor['name']} {shape} {tensor['dtype']}{quantization}"


def _flag_line(description: dict) -> str:
    negative, threshold = description["negative_label"], description["threshold"]
    if negative is None or threshold is None:
        return "none (the model defines no review threshold)"
    return f"needs review when 1 - p({negative}) >= {threshold:g}"



@main.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "-m", "models", multiple=True, required=True, type=ModelPathType(),
              help=f"{MODEL_HELP}, to measure; repeat the option for several.")
@click.option("--threads", default="1", show_default=True, callback=parse_thread_counts, metavar="N,M",
              help="Inference thread counts to measure each model at.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("bench"),
              show_default=True, help="Folder for bench.json, bench.md and pareto.png.")
@click.option("--limit", type=click.IntRange(min=1), help="Bench a class-stratified sample of this many images.")
@click.option("--split", type=click.Choice(["train", "val", "test"]),
              help="Only this split: from train/valid/test folders in DATA, or from --split-file.")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with file and split columns, e.g. runs/cxr3/split.csv from xscreen train.")
@click.option("--floor", type=click.FloatRange(0, 1),
              help="Exit with status 1 when any model's macro-F1 is below this (a CI gate).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed batch-1 inferences per model and thread count.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed inferences before them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --limit sample.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Decoding threads, as in xscreen run [default: one per core].")
@click.option("--batch-size", type=click.IntRange(min=1),
              help=f"Images per batch, as in xscreen run [default: {DEFAULT_BATCH_SIZE}].")
@labels_option
@assumption_options
def bench(data: Path, models: tuple[Path, ...], threads: tuple[int, ...], out: Path, limit, split, split_file,
          floor, runs: int, warmup: int, seed: int, workers, batch_size, labels=None, input_scaling=None,
          negative_label=None, threshold=None) -> None:
    """Measure speed against accuracy for each --model at each thread count on labelled folder DATA.

    DATA holds one sub-folder per class (or train/valid/test folders of them; a manifest.csv may
    relabel). Per model and thread count: accuracy per class, batch-1 latency percentiles, images/s
    through the `xscreen run` pipeline, file size, load time, peak memory. Writes OUT/bench.json,
    OUT/bench.md and OUT/pareto.png. Exit 2 when DATA has a class a model does not know.
    """
    from .bench import BenchConfig, BenchError, run_bench, terminal_rows, write_report
    from .runtime._labelled import LabelledFolderError

    err = Console(stderr=True)
    config = BenchConfig(data=data, models=models, threads=threads, runs=runs, warmup=warmup, limit=limit,
                         split=split, split_file=split_file, seed=seed, workers=workers, batch_size=batch_size,
                         model_options={"labels": labels, "input_scaling": input_scaling,
                                        "negative_label": negative_label, "threshold": threshold})
    try:
        report = run_bench(config, progress=lambda message: err.print(escape(message), highlight=False,
                                                                      soft_wrap=True))
    except (BenchError, LabelledFolderError, ModelContractError, MissingRuntimeError) as exc:
        raise CommandError(str(exc)) from None
    written = write_report(report, out)

    table = bench_table(terminal_rows(report.results), f"xscreen bench: {report.data['n_images']:,} images of "
                        f"{data} (all columns: bench.md)")
    # A log has no width: keep the table whole instead of folding it into 80 columns.
    console = Console() if Console().is_terminal else Console(width=200)
    console.print(table)
    hardware = report.hardware
    console.print(f"{escape(hardware['cpu_model'])}, {hardware['cores_logical']} cores, "
                  f"{escape(', '.join(hardware['simd']) or 'no SIMD flags found')}", highlight=False)
    for warning in report.data["training_films_warnings"].values():
        console.print(f"[bold red]warning:[/] {escape(warning)}", highlight=False)
    if report.data.get("split_note"):
        console.print(f"split {escape(str(report.data['split_file']))}: {escape(report.data['split_note'])}",
                      highlight=False)
    for row in report.results:
        if row.get("assumptions") and row["threads"] == threads[0]:
            console.print(f"[yellow]{escape(row['assumptions'])}[/]", highlight=False)
    console.print(f"wrote {escape(', '.join(str(p) for p in written.values() if p))}", highlight=False)
    if written["plot"] is None:
        console.print(escape("no pareto.png: matplotlib is not installed (pip install 'xscreen[report]')"),
                      highlight=False)
    console.print(f"[dim]{DISCLAIMER}[/]")
    below = report.below_floor(floor) if floor is not None else []
    for row in below:
        err.print(f"[red]below the floor[/] {escape(row['model'])} at {row['threads']} thread(s): macro-F1 "
                  f"{row['metrics']['macro_f1']:.4f} < {floor:g}", highlight=False, soft_wrap=True)
    if below:
        sys.exit(1)


def _require_training_stack() -> None:
    from .export import has_training_stack

    if not has_training_stack():
        raise CommandError("training and export need TensorFlow: pip install 'xscreen[train]'")


@main.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/xscreen"), show_default=True,
              help="Run folder: model.keras, model.json, split.csv, report.json/.md.")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (Keras download or ~/.keras/models), none, or a local MobileNetV2 .h5 file.")
@click.option("--input-size", default=TrainConfig.input_size, show_default=True, type=click.IntRange(32, 1024))
@click.option("--alpha", default=TrainConfig.alpha, show_default=True, type=float, help="MobileNetV2 width multiplier.")
@click.option("--fine-tune-from", default=TrainConfig.fine_tune_from, show_default=True,
              help="First MobileNetV2 block to fine-tune; the blocks below are frozen and cached.")
@click.option("--views", default=TrainConfig.views, show_default=True, type=click.IntRange(1, 16),
              help="Cached views per training image: the original plus augmented copies.")
@click.option("--head-epochs", default=TrainConfig.head_epochs, show_default=True, type=click.IntRange(0))
@click.option("--epochs", default=TrainConfig.epochs, show_default=True, type=click.IntRange(0),
              help="Fine-tune epochs.")
@click.option("--patience", default=TrainConfig.patience, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True, type=click.IntRange(1))
@click.option("--min-sensitivity", default=TrainConfig.min_sensitivity, show_default=True, type=click.FloatRange(0, 1),
              help="Abnormal sensitivity the screening threshold must reach on validation.")
@click.option("--horizontal-flip/--no-horizontal-flip", default=False, show_default=True)
@click.option("--preprocessing", type=click.Choice(list(PREPROCESSINGS)), default=TrainConfig.preprocessing,
              show_default=True, help="Pixel pipeline, recorded in the model: the jpeg75 one matches cxr3's encoding.")
@click.option("--source-balance", default=TrainConfig.source_balance, show_default=True, type=click.FloatRange(0, 1),
              help="Within a class, weigh sources by n**(1-B): 0 by count, 1 every source equal.")
@click.option("--hold-out", "hold_outs", multiple=True, metavar="NAME=FIELD:PATTERN",
              help="Also train a model without these films and score it on them (repeatable), "
                   "e.g. nih=source:nih-chestxray14 or normal2=file:*NORMAL2-*.")
@click.option("--limit", type=click.IntRange(1), help="Use at most N images per class (quick runs).")
@click.option("--seed", default=TrainConfig.seed, show_default=True)
def train_command(data, out, weights, input_size, alpha, fine_tune_from, views, head_epochs, epochs, patience,
                  batch_size, min_sensitivity, horizontal_flip, preprocessing, source_balance, hold_outs, limit, seed):
    """Train a MobileNetV2 screening model on DATA... (labelled folders: one sub-folder per class)."""
    _require_training_stack()
    from .export import TrainConfig, train

    config = TrainConfig(
        data=data, out=out, weights=None if weights.lower() == "none" else weights, input_size=input_size,
        alpha=alpha, fine_tune_from=fine_tune_from, views=views, head_epochs=head_epochs, epochs=epochs,
        patience=patience, batch_size=batch_size, min_sensitivity=min_sensitivity,
        horizontal_flip=horizontal_flip, preprocessing=preprocessing, source_balance=source_balance,
        hold_outs=hold_outs, limit=limit, seed=seed,
    )
    try:
        result = train(config, log=_log_line)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    console = Console()
    console.print(_metrics_table(result.test_report, "held-out test split"))
    console.print(f"model {escape(str(result.model_path))}; report {escape(str(out / 'report.md'))}; "
                  f"{result.timings['total_s'] / 60:.1f} min in all, "
                  f"{result.timings['fine_tune_epoch_s']:.0f} s per fine-tune epoch", highlight=False)
    if hold_outs:
        console.print(f"hold-out figures (films the model never saw): {escape(str(out / 'report.md'))}")
    console.print(f"[dim]{DISCLAIMER}[/]")


@main.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--formats", default="all", show_default=True,
              help="all, or a comma-separated list of: " + ", ".join(list(EXPORT_FORMATS)))
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Labelled folder for int8 calibration (its training-split images only); "
                   "default: the run's training films. For a model trained elsewhere, also where its "
                   "threshold is chosen.")
@click.option("--calibration-size", default=ExportConfig.calibration_size, show_default=True, type=click.IntRange(10),
              help="Training images used to calibrate int8 formats (stratified sample).")
@click.option("--verify", type=click.Path(path_type=Path),
              help="Labelled folder to verify on (default: the training run's test split).")
@click.option("--verify-size", type=click.IntRange(1), help="Verify on at most N images (stratified).")
@click.option("--labels", callback=_parse_labels, metavar="A,B,C",
              help="Comma-separated labels in output order, for a model without model.json.")
@click.option("--input-scaling", type=click.Choice(list(INPUT_SCALINGS)),
              help="For a model trained elsewhere (required): what its input expects; xscreen puts the "
                   "grey-to-RGB tiling and this scaling inside the exported graph.")
@negative_label_option
@threshold_option
@click.option("--out", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option("--stem", help="File name prefix (default: the source model's name, e.g. seed -> seed_int8.tflite).")
@click.option("--strict", is_flag=True, help="Fail (exit 1) when an int8 format loses > 1 point of macro-F1.")
@click.option("--force", is_flag=True,
              help="Keep --input-scaling and --labels even when the verification films say another scaling or "
                   "label order is clearly better, or the model scores below chance.")
def export_command(model, formats, calibration, calibration_size, verify, verify_size, labels, input_scaling,
                   negative_label, threshold, out, stem, strict, force):
    """Export a Keras MODEL (.keras or .h5) to TFLite and ONNX formats, each verified against it.

    A model trained elsewhere (no model.json beside it) needs --labels and --input-scaling: xscreen
    wraps it to take grey 0..255 pixels and give probabilities (a softmax is added to a logits head),
    and checks both on the labelled verification films: another input scaling or label order clearly
    better, or a score below chance, fails the export (--force keeps yours).
    """
    _require_training_stack()
    from .export import export_model

    config = ExportConfig(
        model=model, out=out, formats=formats, calibration=calibration, calibration_size=calibration_size,
        verify=verify, verify_size=verify_size, stem=stem, strict=strict, force=force, labels=labels,
        input_scaling=input_scaling, negative_label=negative_label, threshold=threshold,
    )
    try:
        report = export_model(config, log=_log_line)
    except ValueError as exc:  # ExportError, unknown format, bad labels
        raise CommandError(str(exc)) from None
    table = Table(title=escape(f"export of {model} (verified on {report['verification']['images']} held-out images)"))
    for column in ("format", "file", "size", "agreement", "max |Δp|", "macro-F1", "Δ pts", "status"):
        table.add_column(column)
    for row in report["formats"]:
        if row["status"] == "error":
            table.add_row(row["format"], escape(row["file"]), "", "", "", "", "",
                          f"[red]error[/] {escape(row['note'])}")
            continue
        colour = {"pass": "green", "warn": "yellow", "fail": "red"}[row["status"]]
        table.add_row(row["format"], escape(row["file"]), format_megabytes(row["size_bytes"]),
                      f"{row['top1_agreement']:.4f}",
                      f"{row['max_abs_dp']:.4f}", f"{row['metrics']['macro_f1']:.4f}",
                      f"{row['macro_f1_delta'] * 100:+.2f}", f"[{colour}]{row['status']}[/] {escape(row['note'])}")
    console = Console() if Console().is_terminal else Console(width=200)
    console.print(table)
    if report["wrapping"]:
        console.print(f"wrapped: {escape(report['wrapping']['description'])}", highlight=False)
    console.print(f"report: {escape(str(out / 'export_report.md'))}", highlight=False)
    if any(row["status"] in ("fail", "error") for row in report["formats"]):
        sys.exit(1)


def _log_line(message: str) -> None:
    Console(stderr=True).print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(message)}", highlight=False)


def _metrics_table(report: dict, title: str) -> Table:
    """Per-class precision / recall / F1 / support, then macro-F1 and the screening point."""
    table = Table(title=title, title_justify="left")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label, row in report["per_class"].items():
        table.add_row(escape(label), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                      str(row["support"]))
    table.add_row("macro-F1", "", "", f"{report['macro_f1']:.4f}", str(report["n"]), style="bold")
    screening = report.get("screening")
    if screening and screening["sensitivity"] is not None and screening["specificity"] is not None:
        table.caption = (f"abnormal vs {screening['negative_label']} at threshold {screening['threshold']:.3f}: "
                         f"sensitivity {screening['sensitivity']:.4f}, specificity {screening['specificity']:.4f}")
    return table


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@model_option
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Result file; never an existing one [default: a new xscreen-results[-N].csv in FOLDER, "
                   "or in the working folder when FOLDER is read-only].")
@click.pass_context
def demo(ctx: click.Context, folder: Path | None, model_path: Path | None, out: Path | None) -> None:
    """Screen FOLDER with the bundled model; with no FOLDER, write synthetic test films first and say so.

    The synthetic films (./xscreen-demo, every name marked SYNTHETIC) are drawn by a program, not
    X-rays of anyone: they show the pipeline at work, and the predictions on them mean nothing.
    """
    from .runtime._demo import DEMO_NOTE, SYNTHETIC_SCOPE_NOTE, fresh_result_path, write_demo_folder

    err = Console(stderr=True)
    notes: tuple[str, ...] = ()
    synthetic = folder is None
    if synthetic:
        notes = (DEMO_NOTE.strip(),)  # the report says it too: it is what gets shown around
        try:
            folder, films = write_demo_folder()
        except OSError as exc:
            raise CommandError(f"cannot write the demo films ({exc.strerror or exc}): "
                               "run xscreen demo from a writable folder") from None
        err.print(f"[yellow]wrote {len(films)} {escape(DEMO_NOTE.strip())}\n{SYNTHETIC_SCOPE_NOTE}[/]\n"
                  f"folder: {escape(str(folder))}", highlight=False)
    elif not folder.is_dir():
        raise CommandError(f"{folder} is not a folder")
    out = out or fresh_result_path(folder)
    # Drawings are not chest films, and the image check says so: off for them, to show the rest of the pipeline.
    ctx.invoke(run, target=folder, model_path=model_path, out=out, report=out.with_suffix(".html"),
               report_notes=notes, no_scope_check=synthetic)


@main.command("report")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file [default: RESULTS with the suffix .html].")
@click.option("--model", "-m", "model_path", type=ModelPathType(),
              help=f"{MODEL_HELP} [default: the one that wrote RESULTS, by its .meta.json record, when it is still "
                   "there with the same SHA-256; else bundled].")
@labels_option
@backend_option
@click.option("--overwrite", is_flag=True, help="Replace --out even when it is not an xscreen report.")
def report_command(results: Path, out: Path | None, model_path: Path | None, labels, backend, overwrite: bool) -> None:
    """Write the HTML report of RESULTS, a .csv or .jsonl file written by xscreen run.

    Flagged films get thumbnails with heatmaps when they can still be read and the model (--model,
    else the recorded one, else the bundled one) has a heatmap output and gave the same prediction; otherwise the report
    shows the table and says why.
    """
    try:
        written, content = report_from_results(results, out or results.with_suffix(".html"), model_path,
                                               overwrite=overwrite, labels=labels, backend=backend)
    except (ReportOptionError, ResultsFileError, ModelContractError, MissingRuntimeError) as exc:
        raise CommandError(str(exc)) from None
    console = Console()
    for line in content.notes:
        console.print(f"[yellow]note[/] {escape(line)}", highlight=False)
    console.print(f"report: {escape(str(written))} ({len(content.thumbnails):,} heatmap thumbnails)", highlight=False)
    console.print(f"[dim]{DISCLAIMER}[/]")


from ._cli_calibrate import calibrate  # noqa: E402  (these modules use CommandError and open_model from here)
from ._cli_serve import serve, watch  # noqa: E402

for command in (calibrate, serve, watch):
    main.add_command(command)
