"""The options every command that opens a model shares: which model, its labels, its runtime, and
what a model without xscreen metadata cannot say itself."""

from __future__ import annotations

from pathlib import Path

import click

from .runtime import BACKEND_NAMES, resolve_model_path
from .runtime._contract import INPUT_SCALINGS
from .runtime._model import BUNDLED_MODEL_NAMES


def _parse_labels(ctx, param, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    labels = tuple(label.strip() for label in value.split(","))
    if not all(labels):
        raise click.BadParameter(f"expected comma-separated class names, got {value!r}")
    return labels


def _parse_rename(ctx, param, value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    pairs = [part.split("=", 1) for part in value.split(",")]
    if not all(len(pair) == 2 and pair[0].strip() and pair[1].strip() for pair in pairs):
        raise click.BadParameter(f"expected old=new[,old=new], got {value!r}")
    return {old.strip(): new.strip() for old, new in pairs}


class ModelPathType(click.ParamType):
    """A model file, or a bundled model's name (``bundled``, ``bundled-onnx``)."""

    name = "model"

    def convert(self, value, param, ctx) -> Path:
        if isinstance(value, Path):
            return value
        try:
            return resolve_model_path(value)
        except FileNotFoundError as exc:
            self.fail(str(exc), param, ctx)


MODEL_HELP = f"A .tflite or .onnx model file, or a bundled one: {', '.join(BUNDLED_MODEL_NAMES)}"
model_option = click.option("--model", "-m", "model_path", type=ModelPathType(),
                            help=f"{MODEL_HELP} [default: bundled].")
labels_option = click.option(
    "--labels", callback=_parse_labels, metavar="A,B,C",
    help="Class names in output order, for a model without xscreen metadata.",
)
rename_option = click.option(
    "--rename", callback=_parse_rename, metavar="OLD=NEW[,OLD=NEW]",
    help="Rename labels in the output; the screening flag follows the renamed negative label.",
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


def parse_thread_counts(ctx, param, value: str) -> tuple[int, ...]:
    """A --threads value such as ``1,2``: the distinct positive counts, in order."""
    try:
        counts = tuple(int(part) for part in value.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected comma-separated positive integers such as 1,2, got {value!r}")
    return tuple(dict.fromkeys(counts))
