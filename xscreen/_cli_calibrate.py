"""``xscreen calibrate``: check a model on a site's labelled films and write it calibrated to them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ._console import print_calibration_summary
from ._options import assumption_options, backend_option, labels_option, model_option
from .cli import CommandError, open_model
from .runtime import ModelContractError


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="The calibrated model file (.tflite or .onnx like --model); its report goes beside it.")
@click.option("--sensitivity", type=click.FloatRange(0.5, 1.0), default=0.95, show_default=True,
              help="The site threshold: the highest that flags this share of the abnormal films.")
@click.option("--evaluate-only", is_flag=True, help="Only check the model on FOLDER (the before half); write no model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and the bootstrap.")
@labels_option
@backend_option
@assumption_options
def calibrate(folder: Path, model_path: Path | None, out: Path | None, sensitivity: float, evaluate_only: bool,
              overwrite: bool, seed: int, labels, backend, **assumptions) -> None:
    """Check a model on FOLDER, a site's labelled films (one sub-folder per label, optional manifest.csv with
    group = patient), and write a model calibrated to them: one file, applied by every command with no flag.
    """
    from .calibrate import CalibrationError, calibrate_site

    if not evaluate_only and out is None:
        raise CommandError("give --out SITE_MODEL (.tflite or .onnx), or --evaluate-only")
    if out is not None and not evaluate_only and out.exists() and not overwrite:
        raise CommandError(f"{out} exists: choose another --out or pass --overwrite")
    model = open_model(model_path, labels=labels, backend=backend, **assumptions)
    if out is not None and out.resolve() == model.path.resolve():
        raise CommandError(f"--out {out} is the model itself: write the calibrated model to a new file")
    try:
        outcome = calibrate_site(folder, model, out, sensitivity=sensitivity, evaluate_only=evaluate_only, seed=seed)
    except (CalibrationError, ModelContractError) as exc:
        raise CommandError(str(exc)) from None
    print_calibration_summary(Console(), outcome.result, outcome.report_files, outcome.model_file)
