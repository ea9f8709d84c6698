"""``xscreen export``: one Keras model into every format of the table, each verified before it counts.

Verification loads each file through the *runtime* (``xscreen.runtime.load_model``), exactly as
``xscreen run`` will, and compares it with the Keras model on held-out images: top-1 agreement,
max |Δp|, and the format's own per-class metrics. A model trained elsewhere (``input_scaling``
given) is first wrapped to meet the contract (``_wrap.py``) and verified against the wrapped model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..runtime._assumptions import AssumptionCheck, check_assumptions
from ..runtime._contract import INPUT_SCALING_CHOICES, ModelMetadata
from ..runtime._labelled import (
    LabelledFolderError,
    LabelledImage,
    read_labelled_folder,
    read_split_csv,
    stratified_sample,
)
from ..runtime._metrics import choose_threshold, classification_report, report_markdown
from ._formats import ExportFormat, ExportInputs, resolve_formats
from ._load_check import load_check
from ._train import DISCLAIMER, METADATA_FILE, SCOPE_FILE, TrainConfig, decode_all
from ._wrap import Wrapping, probabilities_by_scaling, wrap_foreign_classifier

FLOAT_MIN_AGREEMENT = 0.995  # a float format below this is a broken conversion
INT8_MAX_F1_LOSS = 0.01  # an int8 format losing more macro-F1 than this is reported loudly
SCOPE_QUANTILE = 0.99  # of the validation films' scope scores, for scaling the scope threshold per format
MIN_VERIFY_IMAGES = 200  # below this, agreement figures are too coarse to judge a conversion


class ExportError(ValueError):
    """An export that cannot proceed; the message says what to do."""


@dataclass
class ExportConfig:
    model: Path
    out: Path
    formats: str | list[str] = "all"
    calibration: Path | None = None
    calibration_size: int = 1000  # bundled model, int8 agreement: 100 -> 98.1 %, 300 -> 98.4 %, 1000 -> 98.6 %
    verify: Path | None = None  # labelled folder; default: the test split of the training run
    verify_size: int | None = None  # cap on verification images (all by default)
    labels: tuple[str, ...] | None = None  # for a Keras model without its model.json
    input_scaling: str | None = None  # a model trained elsewhere: what its input expects (INPUT_SCALINGS)
    negative_label: str | None = None  # the label meaning nothing to review
    threshold: float | None = None  # None with negative_label and calibration: chosen on calibration images
    stem: str | None = None  # file name prefix; None: the source model's name (default_stem)
    strict: bool = False
    force: bool = False  # keep the given input scaling / label order even when the films say otherwise
    seed: int = 0


def default_stem(model: Path) -> str:
    """Exports are named after their source: ``seed.keras`` -> ``seed_int8.tflite``; a training run's
    ``runs/NAME/model.keras`` -> ``NAME_int8.tflite`` (never the bundled model's ``xscreen_*``)."""
    model = Path(model)
    if model.with_name(METADATA_FILE).is_file() and model.stem == "model" and model.parent.name:
        return model.parent.resolve().name
    return model.stem


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_classifier(path: Path):
    import keras

    if not path.is_file():
        raise ExportError(f"{path} does not exist: pass the model.keras written by `xscreen train`")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise ExportError(f"{path} is not a loadable Keras model: {exc}") from exc
    in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[-1] not in (1, 3) or None in in_shape[1:] or len(out_shape) != 2:
        raise ExportError(
            f"{path} is not an image classifier xscreen can export: input {in_shape} (want (None, H, W, 1) "
            f"grey or (None, H, W, 3) RGB), output {out_shape} (want (None, n_labels))"
        )
    return model


def _contract_model(config: ExportConfig, model) -> tuple[object, Wrapping | None]:
    """The model that meets the contract: an xscreen training run's as it is, any other one wrapped."""
    from_training = config.model.with_name(METADATA_FILE).is_file()
    if from_training and config.input_scaling not in (None, "raw"):
        raise ExportError(f"{config.model} is an xscreen training run (its {METADATA_FILE} is beside it): its "
                          f"scaling is inside the graph, drop --input-scaling {config.input_scaling}")
    if from_training:
        return model, None
    if config.input_scaling is None:
        raise ExportError(f"{config.model} was not trained by xscreen (no {METADATA_FILE} beside it): say what "
                          f"its input expects with {INPUT_SCALING_CHOICES}")
    try:
        return wrap_foreign_classifier(model, config.input_scaling)
    except ValueError as exc:
        raise ExportError(f"{config.model}: {exc}") from None


def _base_metadata(config: ExportConfig, model, wrapping: Wrapping | None) -> ModelMetadata:
    sidecar = config.model.with_name(METADATA_FILE)
    n_out = model.output_shape[-1]
    size = tuple(int(v) for v in model.input_shape[1:3])
    if sidecar.is_file():
        metadata = ModelMetadata.from_json(sidecar.read_text())
        if config.labels:
            metadata = metadata.with_updates(labels=tuple(config.labels))
    elif config.labels:
        metadata = ModelMetadata(labels=tuple(config.labels), input_size=size)
    else:
        raise ExportError(
            f"no {METADATA_FILE} beside {config.model}: pass --labels in the model's output order"
        )
    if len(metadata.labels) != n_out:
        raise ExportError(
            f"{len(metadata.labels)} labels {list(metadata.labels)} but the model outputs {n_out} values"
        )
    if config.negative_label is not None and config.negative_label not in metadata.labels:
        raise ExportError(f"--negative-label {config.negative_label} is not one of the labels "
                          f"{', '.join(metadata.labels)}")
    negative = config.negative_label or metadata.negative_label
    if config.threshold is not None and negative is None:
        raise ExportError(f"--threshold needs the label that means nothing to review: --negative-label one of "
                          f"{', '.join(metadata.labels)}")
    extra = dict(metadata.extra)
    if wrapping is not None:
        extra["wrapping"] = wrapping.to_dict()
    return metadata.with_updates(input_size=size, negative_label=negative, extra=extra,
                                 threshold=config.threshold if config.threshold is not None else metadata.threshold)


def _training_split(model_path: Path) -> dict[str, LabelledImage]:
    """Resolved file path -> image with its label and split, from the training run's split.csv."""
    split_csv = model_path.with_name("split.csv")
    if not split_csv.is_file():
        return {}
    return {img.path.as_posix(): img for img in read_split_csv(split_csv)}


def _select_images(config: ExportConfig, split: dict[str, LabelledImage]):
    """Calibration images (training split only), verification images (test split, held out) and
    threshold-tuning images (validation split; without a training split, the calibration images not
    verified on; none when the threshold is given)."""
    def labelled(folder: Path, purpose: str) -> list[LabelledImage]:
        if not Path(folder).is_dir():
            raise ExportError(f"{purpose} folder {folder} does not exist")
        try:
            return read_labelled_folder(folder)
        except LabelledFolderError as exc:
            raise ExportError(f"{purpose} folder: {exc}") from exc

    def split_of(img: LabelledImage) -> str | None:
        known = split.get(img.path.resolve().as_posix())
        return known.split if known else None

    calibration: list[LabelledImage] = []
    if config.calibration is not None:
        pool = labelled(config.calibration, "calibration")
        # Never calibrate on held-out images: they are what the verification judges.
        calibration = stratified_sample([img for img in pool if split_of(img) == "train"] if split else pool,
                                         config.calibration_size, config.seed)
    elif split:  # the training run's own training films, from every folder it trained on
        calibration = stratified_sample([img for img in split.values() if img.split == "train" and img.path.is_file()],
                                        config.calibration_size, config.seed)
    if config.verify is not None:
        verify = labelled(config.verify, "verification")
        if split:
            verify = [img for img in verify if split_of(img) not in ("train", "val")]
    elif split:
        verify = [img for img in split.values() if img.split == "test" and img.path.is_file()]
    elif config.calibration is not None:
        chosen = {img.path for img in calibration}
        verify = [img for img in labelled(config.calibration, "calibration") if img.path not in chosen]
    else:
        raise ExportError("nothing to verify against: pass --verify DIR (a labelled folder)")
    verify = stratified_sample(verify, config.verify_size, config.seed + 1)
    tuning = [img for img in split.values() if img.split == "val" and img.path.is_file()]
    if config.threshold is not None:
        tuning = []
    elif not split:
        # A model trained elsewhere: its threshold is chosen on the calibration images, never on verified ones.
        held_out = {img.path.resolve() for img in verify}
        tuning = [img for img in calibration if img.path.resolve() not in held_out]
    return calibration, verify, tuning


def _judge(fmt: ExportFormat, agreement: float, report: dict, f1_delta: float, strict: bool,
           force: bool) -> tuple[str, str]:
    chance = 1 / len(report["labels"])
    if report["macro_f1"] < chance:  # agreement with a wrong model proves nothing
        note = (f"macro-F1 {report['macro_f1']:.4f} on the verification films is below chance ({chance:.3f}): "
                "wrong labels, label order or input scaling")
        return ("warn" if force else "fail"), note
    if not fmt.quantized:
        if agreement < FLOAT_MIN_AGREEMENT:
            return "fail", f"top-1 agreement {agreement:.4f} < {FLOAT_MIN_AGREEMENT} for a float format"
        return "pass", ""
    if f1_delta < -INT8_MAX_F1_LOSS:
        note = f"macro-F1 {f1_delta * 100:+.2f} points vs Keras (more than {INT8_MAX_F1_LOSS * 100:.0f} lost)"
        return ("fail" if strict else "warn"), note
    return "pass", ""


def export_model(config: ExportConfig, log: Callable[[str], None] = print) -> dict:
    """Convert, embed metadata, verify and report every requested format. Returns the report."""
    import tensorflow as tf

    formats = resolve_formats(config.formats)
    config.model = Path(config.model)
    original = _load_classifier(config.model)
    classifier, wrapping = _contract_model(config, original)
    if wrapping is not None:
        log(f"wrapped {config.model.name}: {wrapping.describe()}")
    base = _base_metadata(config, classifier, wrapping)
    model, outputs = _screening_model(config.model, classifier, base)
    base = base.with_updates(outputs=outputs, scope=base.scope if "scope" in outputs else None)
    log("outputs: " + ", ".join(f"{name} {tuple(shape)}" for name, shape in outputs.items()))
    split = _training_split(config.model)
    if any(f.name.endswith("int8") for f in formats) and config.calibration is None and not split:
        raise ExportError("int8 formats need real calibration images: pass --calibration DIR")
    calibration_images, verify_images, tuning_images = _select_images(config, split)
    unknown = sorted({img.label for img in verify_images} - set(base.labels))
    if unknown:
        raise ExportError(f"verification labels {unknown} are not among the model's {list(base.labels)}")
    def decode(images: list[LabelledImage]) -> tuple[np.ndarray, list[LabelledImage]]:
        pixels, kept, _ = decode_all(images, base.input_size, base.preprocessing, log)
        return pixels, [images[i] for i in kept]

    calibration = decode(calibration_images)[0] if calibration_images else None
    verify_pixels, verify_images = decode(verify_images)
    y_true = np.array([base.labels.index(img.label) for img in verify_images])
    tuning = None
    if wrapping is not None and tuning_images and base.negative_label and base.threshold is None:
        base = base.with_updates(extra={**base.extra, "min_sensitivity": TrainConfig.min_sensitivity})
    if tuning_images and base.negative_label and base.extra.get("min_sensitivity"):
        tune_pixels, tuning_images = decode(tuning_images)
        negative = np.array([img.label == base.negative_label for img in tuning_images])
        keras_scope = None
        if "scope" in outputs:
            from ..runtime._scope import scope_scores

            z = _named(model.predict(tune_pixels.astype(np.float32), batch_size=64, verbose=0), outputs)["scope"]
            keras_scope = scope_scores(z, np.asarray(base.scope["class_means"], np.float32))
        tuning = _Tuning(tune_pixels, ~negative, base.labels.index(base.negative_label),
                         float(base.extra["min_sensitivity"]), keras_scope)
        if base.threshold is None:
            base = base.with_updates(threshold=tuning.threshold_for(
                lambda pixels: classifier.predict(pixels.astype(np.float32), batch_size=64, verbose=0)))
            log(f"threshold {base.threshold:.4f} chosen on {len(tuning_images)} calibration images "
                f"(abnormal sensitivity >= {tuning.min_sensitivity})")
    elif wrapping is not None and base.negative_label and base.threshold is None:
        log("no screening threshold: pass --threshold, or --calibration DIR to choose one")
    log(f"calibration: {0 if calibration is None else len(calibration)} training images; "
        f"verification: {len(verify_images)} held-out images")
    if len(verify_images) < MIN_VERIFY_IMAGES:
        log(f"warning: fewer than {MIN_VERIFY_IMAGES} verification images: one flip moves agreement by "
            f"{100 / len(verify_images):.1f} points; pass --verify with a larger labelled folder")

    keras_outputs = _named(model.predict(verify_pixels.astype(np.float32), batch_size=64, verbose=0), outputs)
    keras_prob = keras_outputs["probabilities"]
    assumptions = None
    if wrapping is not None:
        assumptions = _check_assumptions(config, original, base.labels, verify_pixels,
                                         [img.label for img in verify_images], keras_prob, log)
    reference = _Reference(verify_pixels, y_true, keras_prob, keras_outputs,
                           classification_report(y_true, keras_prob, base.labels, base.negative_label,
                                                 base.threshold), tuning)
    source_hash = file_sha256(config.model)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp, "saved_model")
        height, width = base.input_size
        model.export(str(saved_model), format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec([None, height, width, 1], tf.float32, name="image")])
        inputs = ExportInputs(model, saved_model, calibration, base.input_size, log)
        for fmt in formats:
            metadata = base.with_updates(
                format=fmt.name, input_dtype=fmt.input_dtype, source_sha256=source_hash,
                exported_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                xscreen_version=__version__,
            )
            rows.append(_export_one(fmt, inputs, metadata,
                                    out / fmt.filename.format(stem=config.stem or default_stem(config.model)),
                                    reference, config.strict, config.force, log))
    report = {
        "schema_version": 1,
        "source_model": str(config.model), "source_sha256": source_hash,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "xscreen_version": __version__,
        "verification": {"images": len(verify_images),
                         "source": "training test split" if split and config.verify is None
                         else str(config.verify or config.calibration)},
        "calibration_images": 0 if calibration is None else len(calibration),
        "wrapping": None if wrapping is None else wrapping.to_dict(),
        "assumption_check": None if assumptions is None else assumptions.to_dict(),
        "keras": reference.report,
        "formats": rows,
        "disclaimer": DISCLAIMER,
    }
    (out / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "export_report.md").write_text(_report_md(report))
    return report


def _check_assumptions(config: ExportConfig, original, labels: tuple[str, ...], pixels: np.ndarray,
                       true_labels: list[str], given_prob: np.ndarray, log) -> AssumptionCheck:
    """The wrapped model under every input scaling and label order on the verification films: fail
    (ExportError) when another is clearly better or the given one scores below chance, unless --force."""
    probabilities = probabilities_by_scaling(original, pixels, {config.input_scaling: given_prob})
    check = check_assumptions(probabilities, true_labels, labels, config.input_scaling, config.seed)
    if check.ok:
        log(check.message())
    elif config.force:
        log(f"warning (kept by --force): {check.message()}")
    else:
        fix = "re-export with that" if check.better_found else "check the labels of the films and the model"
        raise ExportError(f"{check.message()}; {fix}, or pass --force to keep yours")
    return check


def _screening_model(path: Path, classifier, metadata: ModelMetadata):
    """The classifier with its heatmap output and, when training fitted one, its scope output."""
    from ._model import with_screening_outputs

    scope_file = path.with_name(SCOPE_FILE)
    if metadata.scope and scope_file.is_file():
        with np.load(scope_file) as stats:
            return with_screening_outputs(classifier, stats["mean"], stats["projection"])
    return with_screening_outputs(classifier)


def _named(predictions, outputs: dict) -> dict[str, np.ndarray]:
    """Keras' list of outputs by role, in the order with_screening_outputs builds them."""
    predictions = predictions if isinstance(predictions, (list, tuple)) else [predictions]
    return dict(zip(outputs, (np.asarray(p) for p in predictions)))


@dataclass(frozen=True)
class _Reference:
    """The held-out images and what the Keras model says about them."""

    pixels: np.ndarray
    y_true: np.ndarray
    prob: np.ndarray
    outputs: dict  # every output of the Keras model by role
    report: dict
    tuning: _Tuning | None


@dataclass(frozen=True)
class _Tuning:
    """Validation images on which each format's own screening threshold is chosen.

    Quantization shifts probabilities, so the Keras threshold would give an int8 model another
    sensitivity; each format gets the threshold that meets the same validation sensitivity target.
    """

    pixels: np.ndarray
    abnormal: np.ndarray
    negative_index: int
    min_sensitivity: float
    keras_scope: np.ndarray | None = None  # the Keras model's scope scores on these films

    def threshold_for(self, predict: Callable[[np.ndarray], np.ndarray]) -> float:
        scores = 1.0 - predict(self.pixels)[:, self.negative_index]
        return choose_threshold(self.abnormal, scores, self.min_sensitivity)

    def scope_for(self, model, scope: dict) -> dict:
        """The scope statistics with the threshold scaled to this format: quantization inflates every
        film's score, so the Keras threshold is moved by the ratio of the 99th percentiles on these films."""
        if self.keras_scope is None or not model.has_scope:
            return scope
        ratio = float(np.quantile(model.predict_outputs(self.pixels).scope_score, SCOPE_QUANTILE)
                      / np.quantile(self.keras_scope, SCOPE_QUANTILE))
        keras_threshold = scope.get("keras_threshold", scope["threshold"])
        return {**scope, "threshold": round(keras_threshold * ratio, 6), "keras_threshold": keras_threshold,
                "format_ratio": round(ratio, 4)}


def _write_model_file(fmt: ExportFormat, data: bytes, metadata: ModelMetadata, path: Path) -> None:
    from ._metadata import embed_onnx_metadata, embed_tflite_metadata

    if fmt.runtime == "tflite":
        path.write_bytes(embed_tflite_metadata(data, metadata))
        return
    import onnx

    proto = onnx.load_from_string(data)
    embed_onnx_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def _export_one(fmt: ExportFormat, inputs: ExportInputs, metadata: ModelMetadata, path: Path,
                reference: _Reference, strict: bool, force: bool, log) -> dict:
    from ..runtime import load_model

    row = {"format": fmt.name, "file": path.name, "description": fmt.description}
    notes: list[str] = []  # what the converter did beyond its recipe: logged, and kept in the report

    def note(line: str) -> None:
        notes.append(line)
        log(f"{fmt.name}: {line}")

    t0 = time.perf_counter()
    try:
        data = fmt.convert(replace(inputs, log=note))
        _write_model_file(fmt, data, metadata, path)
    except Exception as exc:  # one broken converter must not stop the others
        reason = f"conversion failed: {type(exc).__name__}: {exc}"
        log(f"{fmt.name}: {reason}")
        return {**row, "status": "error", "note": reason}
    row["export_s"] = round(time.perf_counter() - t0, 2)
    row["conversion_notes"] = notes
    failure = load_check(path)  # before this process opens it: a crash there would end the export
    if failure is not None:
        path.unlink()
        reason = f"not written: {failure}"
        log(f"{fmt.name}: {reason}")
        return {**row, "status": "error", "note": reason}

    runtime_model = load_model(path)
    if reference.tuning is not None:
        metadata = metadata.with_updates(threshold=reference.tuning.threshold_for(runtime_model.predict),
                                         scope=reference.tuning.scope_for(runtime_model, metadata.scope)
                                         if metadata.scope else None)
        _write_model_file(fmt, data, metadata, path)
        runtime_model = load_model(path)  # verify the file as it ships, with its final metadata
    row["threshold"] = metadata.threshold
    row["size_bytes"] = path.stat().st_size
    prob = runtime_model.predict(reference.pixels)
    report = classification_report(reference.y_true, prob, metadata.labels, metadata.negative_label,
                                   metadata.threshold)
    agreement = float((prob.argmax(1) == reference.prob.argmax(1)).mean())
    f1_delta = report["macro_f1"] - reference.report["macro_f1"]
    status, note = _judge(fmt, agreement, report, f1_delta, strict, force)
    row.update(status=status, note=note, runtime=runtime_model.backend, top1_agreement=agreement,
               max_abs_dp=float(np.abs(prob - reference.prob).max()), macro_f1_delta=f1_delta,
               metrics=report, **_extra_outputs_agreement(runtime_model, reference, metadata))
    line = (f"{fmt.name}: {row['size_bytes'] / 1e6:.2f} MB in {row['export_s']:.0f}s, agreement "
            f"{agreement:.4f}, max|Δp| {row['max_abs_dp']:.4f}, macro-F1 {report['macro_f1']:.4f} "
            f"({f1_delta * 100:+.2f} pts) -> {status.upper()}")
    log(line + (f": {note}" if note else ""))
    return row


def _extra_outputs_agreement(runtime_model, reference: _Reference, metadata: ModelMetadata) -> dict:
    """How the file's heatmaps and scope decisions compare with Keras' on the held-out images."""
    from ..runtime._scope import scope_scores

    found = {}
    if "cam" not in reference.outputs and "scope" not in reference.outputs:
        return found
    outputs = runtime_model.predict_outputs(reference.pixels)
    if "cam" in reference.outputs and outputs.cam is not None:
        keras_cam = reference.outputs["cam"]
        scale = float(np.abs(keras_cam).max()) or 1.0
        # Heatmaps are read as shapes: the correlation of each film's map of its predicted class.
        pred = reference.prob.argmax(1)
        a = keras_cam[np.arange(len(pred)), :, :, pred].reshape(len(pred), -1)
        b = outputs.cam[np.arange(len(pred)), :, :, pred].reshape(len(pred), -1)
        corr = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b) if x.std() > 0 and y.std() > 0]
        found["cam_max_abs_diff_relative"] = float(np.abs(outputs.cam - keras_cam).max() / scale)
        found["cam_median_correlation"] = float(np.median(corr)) if corr else None
    if "scope" in reference.outputs and outputs.scope_score is not None:
        keras_score = scope_scores(reference.outputs["scope"], np.asarray(metadata.scope["class_means"], np.float32))
        threshold = metadata.scope["threshold"]
        keras_threshold = metadata.scope.get("keras_threshold", threshold)
        found["scope_threshold"] = threshold
        found["scope_in_scope_rate"] = float((outputs.scope_score <= threshold).mean())
        found["scope_in_scope_rate_keras"] = float((keras_score <= keras_threshold).mean())
        found["scope_decision_agreement"] = float(((outputs.scope_score <= threshold)
                                                    == (keras_score <= keras_threshold)).mean())
        found["scope_score_max_rel_diff"] = float(np.max(np.abs(outputs.scope_score - keras_score)
                                                          / np.maximum(keras_score, 1e-6)))
    return found


def _report_md(report: dict) -> str:
    md = ["# Export report", "", f"> {report['disclaimer']}", "",
          f"Source: `{report['source_model']}` (sha256 `{report['source_sha256'][:16]}…`), "
          f"exported {report['exported_at']} by xscreen {report['xscreen_version']}. "
          f"Verified on {report['verification']['images']} held-out images "
          f"({report['verification']['source']}); int8 calibrated on {report['calibration_images']} "
          "training images.", "",
          *([f"Wrapped to meet the xscreen contract (verified against the wrapped Keras model): "
             f"{report['wrapping']['description']}.", ""] if report["wrapping"] else []),
          *([f"Assumptions: {report['assumption_check']['message']}.", ""]
            if report.get("assumption_check") else []),
          "| format | file | size (MB) | top-1 agreement | max abs Δp | macro-F1 | Δ vs Keras (pts) "
          "| status |", "|---|---|---|---|---|---|---|---|",
          f"| keras (reference) | | | 1.0000 | 0 | {report['keras']['macro_f1']:.4f} | 0 | |"]
    for row in report["formats"]:
        if row["status"] == "error":
            md.append(f"| {row['format']} | {row['file']} | | | | | | ERROR: {row['note']} |")
            continue
        md.append(
            f"| {row['format']} | {row['file']} | {row['size_bytes'] / 1e6:.2f} | {row['top1_agreement']:.4f} "
            f"| {row['max_abs_dp']:.4f} | {row['metrics']['macro_f1']:.4f} | {row['macro_f1_delta'] * 100:+.2f} "
            f"| {row['status']}{': ' + row['note'] if row['note'] else ''} |"
        )
    notes = [f"- {row['format']}: {line}" for row in report["formats"] for line in row.get("conversion_notes", [])]
    md += ["", *notes] if notes else []
    md += ["", report_markdown(report["keras"], "Keras reference")]
    for row in report["formats"]:
        if row["status"] != "error":
            md.append(report_markdown(row["metrics"], f"{row['format']} ({row['runtime']})"))
    return "\n".join(md) + "\n"
