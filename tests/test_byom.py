"""Bring your own model: Keras classifiers built like the 2020 notebook's (RGB input, scaling done
outside the graph, softmax or logits head), exported by xscreen and run as third-party files.

Every test asserts that xscreen's probabilities equal the original model's on the same pixels.
"""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from test_export import write_synthetic_films  # noqa: E402

from xscreen.export._export import ExportConfig, ExportError, export_model  # noqa: E402
from xscreen.runtime import load_model  # noqa: E402
from xscreen.runtime._contract import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from xscreen.runtime._decode import PREPROCESSING_ID, decode_radiograph  # noqa: E402

pytestmark = pytest.mark.slow
LABELS = ("covid", "healthy", "pneumonia")
SIZE = 32


def notebook_style_model(head: str, seed: int = 0):
    """A tiny conv net with the notebook's interface: RGB (H, W, 3) already scaled in, 3 classes out."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(6, 3, strides=2, activation="relu")(image)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(len(LABELS), activation="softmax" if head == "softmax" else None)(x))


def notebook_scaling(grey: np.ndarray, scaling: str) -> np.ndarray:
    """What the notebook did outside the graph, written out independently of xscreen's table."""
    rgb = np.repeat(grey.astype(np.float32), 3, axis=-1)
    if scaling == "unit":
        return rgb / 255.0
    if scaling == "mobilenet_v2":
        return rgb / 127.5 - 1.0
    if scaling == "imagenet":
        return ((rgb / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).astype(np.float32)
    raise ValueError(scaling)


def original_probabilities(model, grey: np.ndarray, scaling: str, head: str) -> np.ndarray:
    out = model.predict(notebook_scaling(grey, scaling), verbose=0).astype(np.float64)
    if head == "logits":
        out = np.exp(out - out.max(1, keepdims=True))
        out /= out.sum(1, keepdims=True)
    return out


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    root = write_synthetic_films(tmp_path_factory.mktemp("films"), per_class=12, size=40)
    paths = sorted(root.rglob("*.png")) + sorted(root.rglob("*.jpg"))
    grey = np.stack([decode_radiograph(p, (SIZE, SIZE), PREPROCESSING_ID) for p in paths])[..., None]
    return root, grey


@pytest.mark.parametrize("scaling, head, formats", [
    ("unit", "logits", "tflite-fp32,tflite-int8,onnx-fp32"),
    ("mobilenet_v2", "softmax", "tflite-fp32"),
])
def test_exported_notebook_model_gives_the_original_probabilities(films, tmp_path, scaling, head, formats):
    data, grey = films
    original = notebook_style_model(head)
    path = tmp_path / "seed.keras"
    original.save(path)
    # An untrained network: its scaling and label order cannot be checked against the films (--force).
    report = export_model(ExportConfig(model=path, out=tmp_path / "models", formats=formats, labels=LABELS,
                                       input_scaling=scaling, negative_label="healthy", calibration=data,
                                       calibration_size=18, force=True), log=lambda _: None)
    assert {row["file"] for row in report["formats"]} >= {"seed_fp32.tflite"}  # named after its source
    wrapping = report["wrapping"]
    assert wrapping["input_scaling"] == scaling and wrapping["tiled_to_rgb"]
    assert wrapping["softmax_added"] == (head == "logits")
    assert ("logits" if head == "logits" else "is a softmax") in wrapping["output_evidence"]
    assert "Wrapped to meet the xscreen contract" in (tmp_path / "models" / "export_report.md").read_text()
    expected = original_probabilities(original, grey, scaling, head)
    for row in report["formats"]:
        assert row["status"] in ("pass", "warn"), row
        model = load_model(tmp_path / "models" / row["file"])
        meta = model.metadata
        # Scaling now lives inside the graph; the metadata says what was wrapped and the threshold chosen.
        assert meta.input_scaling == "raw" and meta.extra["wrapping"]["input_scaling"] == scaling
        assert meta.negative_label == "healthy" and 0 <= meta.threshold <= 1
        assert model.assumptions is None
        tolerance = 0.05 if row["format"].endswith("int8") else 1e-5
        np.testing.assert_allclose(model.predict(grey), expected, atol=tolerance)


def test_export_of_a_foreign_model_asks_for_its_input_scaling(tmp_path):
    path = tmp_path / "seed.keras"
    notebook_style_model("softmax").save(path)
    with pytest.raises(ExportError, match="--input-scaling raw.*unit.*mobilenet_v2.*imagenet"):
        export_model(ExportConfig(model=path, out=tmp_path, formats="tflite-fp32", labels=LABELS))
    with pytest.raises(ExportError, match="--negative-label"):
        export_model(ExportConfig(model=path, out=tmp_path, formats="tflite-fp32", labels=LABELS,
                                  input_scaling="unit", threshold=0.5))


def _third_party_files(model, folder) -> dict:
    """The same Keras model converted elsewhere: TFLite, ONNX (NHWC) and ONNX channels first."""
    import tensorflow as tf
    import tf2onnx

    files = {"nhwc.tflite": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
    signature = [tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="pixels")]
    for name, nchw in (("nhwc.onnx", None), ("nchw.onnx", ["pixels"])):
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=13, inputs_as_nchw=nchw)
        files[name] = proto.SerializeToString()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.mark.parametrize("scaling, head", [("unit", "logits"), ("mobilenet_v2", "softmax"),
                                           ("imagenet", "logits")])
def test_third_party_files_give_the_original_probabilities(films, tmp_path, scaling, head):
    _, grey = films
    original = notebook_style_model(head, seed=1)
    expected = original_probabilities(original, grey, scaling, head)
    for name, path in _third_party_files(original, tmp_path).items():
        model = load_model(path, labels=LABELS, input_scaling=scaling, negative_label="healthy", threshold=0.4)
        if name == "nchw.onnx":
            assert model.info()["input"]["shape"][1] == 3  # channels first
        assert model.metadata.extra["output"].startswith("logits" if head == "logits" else "probabilities")
        assert f"input scaling {scaling}" in model.assumptions and "p(healthy) >= 0.4" in model.assumptions
        np.testing.assert_allclose(model.predict(grey), expected, atol=1e-5, err_msg=name)
        # Fed as raw 0..255, as xscreen did before it asked, the same file says something else.
        raw = load_model(path, labels=LABELS, input_scaling="raw")
        assert np.abs(raw.predict(grey) - expected).max() > 1e-3
    sidecar = json.loads(model.metadata.to_json())
    assert sidecar["input_scaling"] == scaling and sidecar["threshold"] == 0.4


BRIGHTNESS = {"covid": 40 / 255, "healthy": 128 / 255, "pneumonia": 215 / 255}  # write_synthetic_films' levels


def brightness_model(order=LABELS):
    """A GAP + dense classifier that is right on the synthetic films when fed [0, 1] (``unit``) pixels:
    output j is ``20 (2 c_j m - c_j^2)`` for the film's mean m, largest for the nearest class level c_j."""
    import keras
    from keras import layers

    image = keras.Input((SIZE, SIZE, 3))
    features = layers.Conv2D(3, 1, use_bias=False, name="identity_features")(image)
    pooled = layers.GlobalAveragePooling2D()(features)
    dense = layers.Dense(len(order), name="head")
    model = keras.Model(image, dense(pooled))
    model.get_layer("identity_features").set_weights([np.eye(3, dtype=np.float32)[None, None]])
    levels = np.array([BRIGHTNESS[label] for label in order], np.float32)
    dense.set_weights([np.tile(20 * 2 * levels / 3, (3, 1)), -20 * levels**2])
    return model


def test_export_names_a_clearly_better_scaling_or_label_order_and_force_keeps_yours(films, tmp_path):
    data, grey = films
    path = tmp_path / "brightness.keras"
    brightness_model().save(path)
    config = {"model": path, "formats": "tflite-fp32", "labels": LABELS, "negative_label": "healthy",
              "calibration": data, "calibration_size": 18}
    # The README's old advice for a rescale=1./255 model: mobilenet_v2. The films say unit.
    with pytest.raises(ExportError, match=r"--input-scaling unit looks right and yours wrong: macro-F1 1\.000 "
                                          r"against 0\.[0-9]+ with --input-scaling mobilenet_v2.*--force"):
        export_model(ExportConfig(out=tmp_path / "a", input_scaling="mobilenet_v2", **config), log=lambda _: None)
    report = export_model(ExportConfig(out=tmp_path / "b", input_scaling="mobilenet_v2", force=True, **config),
                          log=lambda _: None)
    assert not report["assumption_check"]["ok"] and report["assumption_check"]["best"]["input_scaling"] == "unit"
    # Right scaling: checked and passed, and the GAP + dense head gets an exact heatmap.
    report = export_model(ExportConfig(out=tmp_path / "c", input_scaling="unit", **config), log=lambda _: None)
    assert report["assumption_check"]["ok"] and report["assumption_check"]["given"]["macro_f1"] == 1.0
    assert report["wrapping"]["heatmap_ready"] and report["formats"][0]["status"] == "pass"
    model = load_model(tmp_path / "c" / "brightness_fp32.tflite")
    assert model.has_heatmaps and not model.has_scope
    from test_cli_run import xscreen

    info = " ".join(xscreen("info", tmp_path / "c" / "brightness_fp32.tflite").output.split())
    assert "inside the graph: grey 0..255 in, tiled to RGB, scaled unit" in info  # the wrapping, in the table
    outputs = model.predict_outputs(grey)
    np.testing.assert_allclose(outputs.probabilities, original_probabilities(brightness_model(), grey, "unit",
                                                                             "logits"), atol=1e-5)
    # The class-activation map is exact: its spatial mean plus the bias gives the logits.
    logits = outputs.cam.mean(axis=(1, 2)) + brightness_model().get_layer("head").get_weights()[1]
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), outputs.probabilities,
                               atol=1e-4)


def test_export_names_the_label_order_of_a_model_trained_in_another_order(films, tmp_path):
    data, _ = films
    path = tmp_path / "reordered.keras"
    brightness_model(order=("healthy", "pneumonia", "covid")).save(path)
    with pytest.raises(ExportError, match=r"--labels healthy,pneumonia,covid looks right"):
        export_model(ExportConfig(model=path, out=tmp_path, formats="tflite-fp32", labels=LABELS,
                                  input_scaling="unit", calibration=data, calibration_size=18), log=lambda _: None)
