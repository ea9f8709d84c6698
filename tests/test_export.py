"""A tiny real training run and the export of all six formats (TensorFlow needed; slow)."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from xscreen.export._export import ExportConfig, ExportError, export_model  # noqa: E402
from xscreen.export._formats import FORMATS, resolve_formats  # noqa: E402
from xscreen.export._train import TrainConfig, train  # noqa: E402
from xscreen.runtime import load_model  # noqa: E402

pytestmark = pytest.mark.slow
LABELS = ("covid", "healthy", "pneumonia")


def write_synthetic_films(root, per_class=24, size=40):
    """Three classes a random network can still tell apart: dark, mid-grey and bright films."""
    from PIL import Image

    rng = np.random.default_rng(0)
    levels = {"covid": 40, "healthy": 128, "pneumonia": 215}
    for label, level in levels.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 12, (size, size)), 0, 255).astype(np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / label / f"{label}-{i}{suffix}")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = write_synthetic_films(tmp_path_factory.mktemp("data"))
    second = write_synthetic_films(tmp_path_factory.mktemp("second"), per_class=8)
    out = tmp_path_factory.mktemp("run")
    # Two folders (two sources); a hold-out model trained without the second, scored on it.
    config = TrainConfig(data=(data, second), out=out, weights=None, input_size=32, alpha=0.35, views=2,
                         epochs=30, patience=30, batch_size=16, head_lr=3e-3, scope_features=8,
                         hold_outs=("second=source:second*",))
    result = train(config, log=lambda _: None)
    return data, out, result


def test_training_writes_model_split_and_report(trained):
    data, out, result = trained
    assert (out / "model.keras").is_file()
    rows = (out / "split.csv").read_text().splitlines()
    assert rows[0] == "file,label,group,split,source,population" and len(rows) == 1 + 72 + 24
    # groups are prefixed by their folder, so two folders cannot share a patient by chance
    assert {row.split(",")[2].split("/")[0] for row in rows[1:]} == {data.name, data.name.replace("data", "second")}
    report = json.loads((out / "report.json").read_text())
    assert set(report["test"]["per_class"]) == set(LABELS)
    assert report["test"]["confusion_matrix"] and report["threshold"] is not None
    assert "Not a medical device" in (out / "report.md").read_text()
    assert result.metadata.labels == LABELS and result.metadata.negative_label == "healthy"
    # brightness is trivially separable: a working recipe learns it
    assert report["validation"]["macro_f1"] > 0.9
    # figures per source, and a hold-out model scored on every film of the source it never saw
    assert set(report["test_cohorts"]["by_source"]) <= {data.name, data.name.replace("data", "second")}
    held = report["hold_outs"]["second"]
    train_rows = [row for row in rows[1:] if row.split(",")[3] == "train"]
    assert held["held_out"]["n"] == 24
    assert held["trained_on"] == sum(not row.split(",")[2].startswith("second") for row in train_rows)
    assert held["held_out"]["macro_f1"] > 0.8  # chance is 0.33
    # the out-of-scope statistic: fitted, its threshold chosen, in the metadata the export embeds
    scope = result.metadata.scope
    assert scope["features"] == 8 and len(scope["class_means"]) == 3 and scope["threshold"] > 0
    assert scope["calibration"]["in_scope_rate_by_source"][data.name] >= 0.75  # a few films: most, not a rate


def test_export_all_formats_verified_and_self_describing(trained, tmp_path):
    data, run, result = trained
    report = export_model(ExportConfig(model=run / "model.keras", out=tmp_path, formats="all",
                                       calibration=data, calibration_size=30), log=lambda _: None)
    assert [row["format"] for row in report["formats"]] == list(FORMATS)
    for row in report["formats"]:
        assert row["status"] in ("pass", "warn"), row
        model = load_model(tmp_path / row["file"])
        meta = model.metadata
        assert meta.labels == LABELS and meta.format == row["format"]
        # each format's own threshold, tuned on the validation split to the same sensitivity target
        assert meta.threshold == pytest.approx(row["threshold"]) and 0 < meta.threshold <= 1
        assert meta.source_sha256 == report["source_sha256"] and meta.input_size == (32, 32)
        if not FORMATS[row["format"]].quantized:
            assert row["top1_agreement"] >= 0.995 and row["max_abs_dp"] < 0.01
        else:
            assert row["top1_agreement"] >= 0.9
    # named after the training run's folder, never the bundled model's xscreen_*
    assert load_model(tmp_path / f"{run.name}_int8.tflite").metadata.input_dtype == "uint8"
    assert "| tflite-int8 |" in (tmp_path / "export_report.md").read_text()
    # every format carries the heatmap and scope outputs, and they agree with Keras'
    for row in report["formats"]:
        model = load_model(tmp_path / row["file"])
        assert model.has_heatmaps and model.has_scope, row["format"]
        assert model.metadata.outputs == {"probabilities": [3], "cam": [1, 1, 3], "scope": [8]}
        if not FORMATS[row["format"]].quantized:
            # fp16 weights move the heatmaps a little (2 % on the bundled model), fp32 not at all
            assert row["cam_max_abs_diff_relative"] < (0.05 if "fp16" in row["format"] else 1e-4)
            assert row["scope_decision_agreement"] >= 0.99
        assert row["scope_in_scope_rate"] >= 0.75


def test_export_refuses_what_it_cannot_do(trained, tmp_path):
    data, run, _ = trained
    with pytest.raises(ValueError, match="unknown format"):
        resolve_formats("tflite-int4")
    lone = tmp_path / "lone"  # a model without its training run's split.csv: no films to calibrate on
    lone.mkdir()
    for name in ("model.keras", "model.json"):
        (lone / name).write_bytes((run / name).read_bytes())
    with pytest.raises(ExportError, match="calibration"):
        export_model(ExportConfig(model=lone / "model.keras", out=tmp_path, formats="tflite-int8",
                                  verify=data))
    with pytest.raises(ExportError, match="does not exist"):
        export_model(ExportConfig(model=run / "missing.keras", out=tmp_path, formats="tflite-fp32"))
    with pytest.raises(ExportError, match="calibration folder"):
        export_model(ExportConfig(model=run / "model.keras", out=tmp_path, formats="tflite-int8",
                                  calibration=tmp_path / "nowhere"))


def test_training_with_one_view_and_a_local_backbone(tmp_path):
    """``--views 1`` (no augmented copies) with a pretrained backbone runs the head phase on the films alone."""
    import keras

    data = write_synthetic_films(tmp_path / "data", per_class=8, size=32)
    # A local backbone file, as on a machine without internet: the head phase runs only with one.
    backbone = tmp_path / "backbone.weights.h5"
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, alpha=0.35,
                                   weights=None).save_weights(backbone)
    config = TrainConfig(data=(data,), out=tmp_path / "run", weights=str(backbone), input_size=32, alpha=0.35,
                         views=1, head_epochs=1, epochs=1, batch_size=16, scope_features=4)
    result = train(config, log=lambda _: None)
    assert (tmp_path / "run" / "model.keras").is_file() and result.metadata.labels == LABELS


def test_int8_export_keeps_an_op_xnnpack_refuses_in_float32(tmp_path):
    """The int8 recipe on a head whose int8 requantization scale is ~514: that op stays float32, the
    rest int8, and the file opens with XNNPACK (before: XNNPACK refused it; on a full MobileNetV2,
    ai-edge-litert aborted the process)."""
    from fixtures.make_models import SIZE, nearly_flat_images, saved_model, scoped_metadata, xnnpack_refused_classifier

    from xscreen.export._formats import ExportInputs, convert_tflite_int8
    from xscreen.export._load_check import load_check
    from xscreen.export._metadata import embed_tflite_metadata
    from xscreen.runtime._tflite_ops import outside_xnnpack_range, requantization_scales

    keras_model = xnnpack_refused_classifier()
    saved = saved_model(keras_model, tmp_path / "saved", batch=None)
    calibration = np.concatenate([image for image, in nearly_flat_images(*SIZE)]).astype(np.uint8)
    notes = []
    data = convert_tflite_int8(ExportInputs(keras_model, saved, calibration, SIZE, notes.append))
    assert outside_xnnpack_range(data) == [] and len(requantization_scales(data)) == 1  # the classifier's
    assert len(notes) == 1 and notes[0].startswith("kept FULLY_CONNECTED op ") and "below 256" in notes[0]
    path = tmp_path / "refused_fixed_int8.tflite"
    path.write_bytes(embed_tflite_metadata(data, scoped_metadata("tflite-int8", input_dtype="uint8", cam=False)))
    assert load_check(path) is None  # in a child first: an abort here must fail the test, not end pytest
    model = load_model(path)
    assert "without XNNPACK" not in model.backend and model.notice is None
    pixels = np.stack([np.full((*SIZE, 1), level, np.uint8) for level in (40, 128, 220)])
    assert [model.labels[i] for i in model.predict(pixels).argmax(1)] == ["healthy", "pneumonia", "covid"]


def test_export_does_not_ship_a_file_the_runtime_cannot_open(trained, tmp_path, monkeypatch):
    from xscreen.export import _export

    data, run, _ = trained
    monkeypatch.setattr(_export, "load_check", lambda path: "the runtime crashed opening it (SIGABRT)")
    report = export_model(ExportConfig(model=run / "model.keras", out=tmp_path, formats="tflite-fp32",
                                       calibration=data, calibration_size=30), log=lambda _: None)
    (row,) = report["formats"]
    assert row["status"] == "error" and row["note"] == "not written: the runtime crashed opening it (SIGABRT)"
    assert not (tmp_path / row["file"]).exists()
    assert "not written: the runtime crashed" in (tmp_path / "export_report.md").read_text()
