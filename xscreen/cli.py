"""The ``xscreen`` command line: each command parses, calls one library function, renders with rich.

Exit codes, for every command: 0 done; 1 with ``--strict`` when a file failed; 2 bad usage, bad
model file or missing extra (a one-line message, never a traceback: raise :class:`CommandError`).
New commands are ``@main.command()`` functions appended at the end of this file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import __version__
from .export._export import ExportConfig
from .export._formats import FORMATS as EXPORT_FORMATS
from .export._train import TrainConfig
from .runtime import (
    BACKEND_NAMES,
    DEFAULT_BATCH_SIZE,
    OUTPUT_SUFFIXES,
    MissingRuntimeError,
    ModelContractError,
    NoInputsError,
    ResumeError,
    RunSummary,
    ScreeningModel,
    available_backends,
    default_model_path,
    load_model,
    run_screening,
)
from .runtime._contract import INPUT_SCALINGS
from .runtime._decode import PREPROCESSINGS

DISCLAIMER = ("xscreen is not a medical device: its output is a research aid for triage studies, "
              "not a diagnosis. A clinician must read every film.")
PLAIN_PROGRESS_EVERY_S = 5.0  # progress lines in logs (stderr not a terminal)


class CommandError(click.ClickException):
    """Bad usage, a bad model file or a missing extra: ``Error: <message>`` on stderr, exit 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xscreen")
def main() -> None:
    """Screen chest X-rays (healthy / pneumonia / COVID-19) on CPUs and edge devices.

    Not a medical device.
    """


# Options shared by the commands that open a model.
def _parse_labels(ctx, param, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    labels = tuple(label.strip() for label in value.split(","))
    if not all(labels):
        raise click.BadParameter(f"expected comma-separated class names, got {value!r}")
    return labels


model_option = click.option(
    "--model", "-m", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .tflite or .onnx model file [default: the bundled model].",
)
labels_option = click.option(
    "--labels", callback=_parse_labels, metavar="A,B,C",
    help="Class names in output order, for a model without xscreen metadata (or to rename them).",
)
backend_option = click.option(
    "--backend", type=click.Choice(BACKEND_NAMES),
    help="Force a runtime [default: the first installed one for the model's format].",
)


input_scaling_option = click.option(
    "--input-scaling", type=click.Choice(list(INPUT_SCALINGS)),
    help="What a model without xscreen metadata expects (required for one): raw 0..255, unit [0, 1], "
         "mobilenet_v2 [-1, 1], imagenet mean/std.",
)
negative_label_option = click.option(
    "--negative-label", metavar="LABEL", help="The label meaning nothing to review (sets the screening flag).")
threshold_option = click.option(
    "--threshold", type=click.FloatRange(0, 1), metavar="T",
    help="Flag for review when 1 - p(negative label) >= T.")


def assumption_options(command):
    """--input-scaling, --negative-label, --threshold: what a model without metadata cannot say itself."""
    return input_scaling_option(negative_label_option(threshold_option(command)))


def open_model(path: Path | None, *, labels: Sequence[str] | None = None, threads: int | None = None,
               backend: str | None = None, **assumptions) -> ScreeningModel:
    """Load a model (the bundled one when ``path`` is None), turning every load failure into exit 2.

    ``assumptions``: input_scaling, negative_label, threshold, as ``load_model`` takes them.
    """
    try:
        return load_model(path or default_model_path(), labels=labels, threads=threads, backend=backend,
                          **assumptions)
    except (ModelContractError, MissingRuntimeError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None


@main.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@model_option
@labels_option
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("results.csv"),
              show_default=True, help=f"Result file: {' or '.join(OUTPUT_SUFFIXES)} by its suffix.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Inference threads [default: one per core].")
@click.option("--workers", type=click.IntRange(min=0), metavar="N",
              help="Decoding threads; 0 decodes in the main thread [default: one per core].")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
              help=f"Images per batch [default: {DEFAULT_BATCH_SIZE}].")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out and screen only the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--follow-symlinks", is_flag=True, help="Enter symlinked folders and files pointing outside TARGET.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when any file could not be screened.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@backend_option
@assumption_options
def run(target: Path, model_path: Path | None, labels, out: Path, threads, workers, batch_size,
        resume: bool, overwrite: bool, follow_symlinks: bool, strict: bool, quiet: bool, backend,
        input_scaling=None, negative_label=None, threshold=None) -> None:
    """Screen every image in TARGET: a folder (searched recursively), one file, or a .txt list of paths.

    Reads PNG (8/16-bit), JPEG and DICOM (also without extension) files and writes one row per
    file to --out: path, status, prediction, prob_<label> per class, flag (needs review), error.
    """
    if resume and overwrite:
        raise CommandError("--resume and --overwrite contradict each other: pick one")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CommandError(f"--out {out}: use a {' or '.join(OUTPUT_SUFFIXES)} file")
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CommandError(f"--out {out}: {blocking} is a file, not a folder")
    if out.exists() and out.stat().st_size > 0 and not (resume or overwrite):
        raise CommandError(f"{out} already exists: pass --resume to finish that run or --overwrite to replace it")
    model = open_model(model_path, labels=labels, threads=threads, backend=backend, input_scaling=input_scaling,
                       negative_label=negative_label, threshold=threshold)
    err = Console(stderr=True)
    reporter = None if quiet else _ProgressReporter(err)
    try:
        summary = run_screening(
            target, model, out, resume=resume, workers=workers, batch_size=batch_size,
            follow_symlinks=follow_symlinks, progress=reporter,
        )
    except (NoInputsError, ResumeError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the target or the output cannot be read or written
        raise CommandError(f"{exc.filename or out}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        err.print(f"\ninterrupted: the rows written so far are in {escape(str(out))}; "
                  "finish with the same command and --resume")
        sys.exit(130)
    finally:
        if reporter is not None:
            reporter.close()
    if not quiet:
        _print_summary(Console(), summary, model)
    if strict and summary.errors:
        sys.exit(1)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.1f} images/s" if task.speed else "", style="progress.data.speed")


class _ProgressReporter:
    """The ``progress(done, total)`` callback: a rich bar on a terminal, a line every few seconds in logs."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bar = None
        self._task = None
        self._started = self._last_line = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self._console.is_terminal:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("screening"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=self._console, transient=True,
                )
                self._bar.start()
                self._task = self._bar.add_task("screening", total=total)
            self._bar.update(self._task, completed=done)
            return
        now = time.perf_counter()
        if done in (0, total) or now - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = now
            rate = done / (now - self._started) if done else 0.0
            eta = f", ETA {(total - done) / rate:,.0f} s" if rate and done < total else ""
            percent = 100 * done / total if total else 100
            self._console.print(f"screened {done:,}/{total:,} ({percent:.0f}%), {rate:,.1f} images/s{eta}",
                                highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_summary(console: Console, summary: RunSummary, model: ScreeningModel) -> None:
    table = Table(title=f"xscreen run: {summary.screened:,} images screened", title_justify="left")
    table.add_column("")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")

    def share(n: int) -> str:
        return f"{100 * n / summary.ok:.1f}%" if summary.ok else "-"

    for label, n in summary.per_class.items():
        table.add_row(f"predicted {escape(label)}", f"{n:,}", share(n))
    if model.metadata.threshold is not None:
        table.add_row("[bold]flagged for review[/]", f"{summary.flagged:,}", share(summary.flagged),
                      end_section=True)
    table.add_row("[red]errors[/]" if summary.errors else "errors", f"{summary.errors:,}", "")
    if summary.skipped_resumed:
        table.add_row("already in the output (resumed)", f"{summary.skipped_resumed:,}", "")
    for reason, n in summary.ignored.items():
        table.add_row(f"[dim]ignored: {escape(reason)}[/]", f"{n:,}", "")
    console.print(table)
    for path, reason in summary.first_errors:
        console.print(f"  [red]error[/] {escape(path)}: {escape(reason)}", highlight=False)
    if summary.errors > len(summary.first_errors):
        console.print(f"  … and {summary.errors - len(summary.first_errors):,} more errors, "
                      f"every one in {escape(summary.out)}")
    console.print(
        f"{summary.screened:,} images in {summary.elapsed_s:.1f} s: [bold]{summary.images_per_s:,.1f} images/s[/] "
        f"(decoding {summary.decode_s:.1f} s summed over threads, inference {summary.inference_s:.1f} s, "
        f"writing {summary.write_s:.1f} s) with {escape(model.path.name)} on {escape(model.backend)}",
        highlight=False,
    )
    console.print(f"results: {escape(summary.out)}", highlight=False)
    if model.assumptions:
        console.print(f"[yellow]{escape(model.assumptions)}[/]", highlight=False)
    console.print(f"[dim]{DISCLAIMER}[/]")


@main.command()
@click.argument("model_path", metavar="[MODEL]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@labels_option
@backend_option
@assumption_options
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(model_path: Path | None, labels, backend, as_json: bool, input_scaling=None, negative_label=None,
         threshold=None) -> None:
    """Describe MODEL (default: the bundled model): labels, input, quantization, threshold, runtime."""
    description = open_model(model_path, labels=labels, backend=backend, input_scaling=input_scaling,
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
        "file": f"{description['file_size_bytes'] / 1024:,.1f} KB, {description['format']}",
        "runtime": description["backend"],
        "labels": ", ".join(description["labels"]),
        "input": _tensor_line(description["input"]),
        "output": _tensor_line(description["output"]),
        "batch": description["batch"],
        "screening flag": _flag_line(description),
        "preprocessing": description["preprocessing"],
        "input scaling": description["input_scaling"],
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



def _parse_thread_counts(ctx, param, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers such as 1,2, got {value!r}")
    return tuple(dict.fromkeys(counts))


@main.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "-m", "models", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A .tflite or .onnx model to measure; repeat the option for several.")
@click.option("--threads", default="1", show_default=True, callback=_parse_thread_counts, metavar="N,M",
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
    from rich import box

    from .bench import BenchConfig, BenchError, run_bench, summary_rows, write_report
    from .runtime._labelled import LabelledFolderError

    err = Console(stderr=True)
    config = BenchConfig(data=data, models=models, threads=threads, runs=runs, warmup=warmup, limit=limit,
                         split=split, split_file=split_file, seed=seed, workers=workers, batch_size=batch_size,
                         model_options={"labels": labels, "input_scaling": input_scaling,
                                        "negative_label": negative_label, "threshold": threshold})
    try:
        report = run_bench(config, progress=lambda message: err.print(message, highlight=False, soft_wrap=True))
    except (BenchError, LabelledFolderError, ModelContractError, MissingRuntimeError) as exc:
        raise CommandError(str(exc)) from None
    written = write_report(report, out)

    rows = summary_rows(report.results)
    table = Table(title=f"xscreen bench: {report.data['n_images']:,} images of {escape(str(data))}",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for column in rows[0]:
        table.add_column(escape(column), justify="left" if column in ("model", "format") else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row.values()))
    # A log has no width: keep the table whole instead of folding it into 80 columns.
    console = Console() if Console().is_terminal else Console(width=200)
    console.print(table)
    hardware = report.hardware
    console.print(f"{escape(hardware['cpu_model'])}, {hardware['cores_logical']} cores, "
                  f"{escape(', '.join(hardware['simd']) or 'no SIMD flags found')}", highlight=False)
    for row in report.results:
        if row.get("assumptions") and row["threads"] == threads[0]:
            console.print(f"[yellow]{escape(row['assumptions'])}[/]", highlight=False)
    console.print(f"wrote {escape(', '.join(str(p) for p in written.values() if p))}", highlight=False)
    if written["plot"] is None:
        console.print("no pareto.png: matplotlib is not installed (pip install 'xscreen[report]')")
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
@click.option("--stem", default="xscreen", show_default=True, help="File name prefix.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) when an int8 format loses > 1 point of macro-F1.")
def export_command(model, formats, calibration, calibration_size, verify, verify_size, labels, input_scaling,
                   negative_label, threshold, out, stem, strict):
    """Export a Keras MODEL (.keras or .h5) to TFLite and ONNX formats, each verified against it.

    A model trained elsewhere (no model.json beside it) needs --labels and --input-scaling: xscreen
    wraps it to take grey 0..255 pixels and give probabilities (a softmax is added to a logits head).
    """
    _require_training_stack()
    from .export import export_model

    config = ExportConfig(
        model=model, out=out, formats=formats, calibration=calibration, calibration_size=calibration_size,
        verify=verify, verify_size=verify_size, stem=stem, strict=strict, labels=labels,
        input_scaling=input_scaling, negative_label=negative_label, threshold=threshold,
    )
    try:
        report = export_model(config, log=_log_line)
    except ValueError as exc:  # ExportError, unknown format, bad labels
        raise CommandError(str(exc)) from None
    table = Table(title=f"export of {model} (verified on {report['verification']['images']} held-out images)")
    for column in ("format", "file", "MB", "agreement", "max |Δp|", "macro-F1", "Δ pts", "status"):
        table.add_column(column)
    for row in report["formats"]:
        if row["status"] == "error":
            table.add_row(row["format"], row["file"], "", "", "", "", "", f"[red]error[/] {escape(row['note'])}")
            continue
        colour = {"pass": "green", "warn": "yellow", "fail": "red"}[row["status"]]
        table.add_row(row["format"], row["file"], f"{row['size_bytes'] / 1e6:.2f}", f"{row['top1_agreement']:.4f}",
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
@click.pass_context
def demo(ctx: click.Context, folder: Path | None, model_path: Path | None) -> None:
    """Screen FOLDER with the bundled model; with no FOLDER, write synthetic test films first and say so.

    The synthetic films (./xscreen-demo, every name marked SYNTHETIC) are drawn by a program, not
    X-rays of anyone: they show the pipeline at work, and the predictions on them mean nothing.
    """
    from .runtime._demo import DEMO_NOTE, write_demo_films

    if folder is None:
        folder = Path("xscreen-demo")
        films = write_demo_films(folder)
        Console(stderr=True).print(f"[yellow]wrote {len(films)} {escape(DEMO_NOTE.strip())}[/]\n"
                                   f"folder: {escape(str(folder))}", highlight=False)
    elif not folder.is_dir():
        raise CommandError(f"{folder} is not a folder")
    ctx.invoke(run, target=folder, model_path=model_path, out=folder / "results.csv", overwrite=True)
