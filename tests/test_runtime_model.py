"""load_model / ScreeningModel: every format predicts the same, the contract is enforced at load time."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONTRACT_MODELS,
    FP32_ONNX,
    FP32_TFLITE,
    INT8_TFLITE,
    LABEL_MISMATCH_TFLITE,
    LABELS,
    LEVELS,
    ONNX_MODEL,
    OTHER_PREPROCESSING_TFLITE,
    THIRD_PARTY_NCHW_ONNX,
    THIRD_PARTY_TFLITE,
    THIRD_PARTY_UNIT_LOGITS_ONNX,
    needs_onnxruntime,
)

from xscreen.runtime import (
    MissingRuntimeError,
    ModelContractError,
    _backends,
    available_backends,
    default_model_path,
    load_model,
)
from xscreen.runtime import _model as model_module
from xscreen.runtime._backends import TensorSpec
from xscreen.runtime._contract import ModelMetadata


def flat_batch(levels, size=(32, 32)) -> np.ndarray:
    return np.stack([np.full((*size, 1), level, dtype=np.uint8) for level in levels])


@pytest.mark.parametrize("path", CONTRACT_MODELS, ids=lambda p: getattr(p, "name", None))
def test_each_format_predicts_the_brightness_rule(path):
    model = load_model(path)
    assert model.labels == LABELS and model.input_size == (32, 32)
    probabilities = model.predict(flat_batch(LEVELS))
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(LEVELS), 3)
    assert [LABELS[i] for i in probabilities.argmax(axis=1)] == list(LEVELS.values())
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)


@pytest.mark.parametrize("path", [INT8_TFLITE, ONNX_MODEL], ids=lambda p: getattr(p, "name", None))
def test_int8_and_onnx_agree_with_fp32(path):
    levels = np.arange(0, 256, 5)
    reference = load_model(FP32_TFLITE).predict(flat_batch(levels))
    other = load_model(path).predict(flat_batch(levels))
    # Away from the two decision boundaries (85 and 170) every format picks the same class.
    clear = np.abs(levels - 85) > 6
    clear &= np.abs(levels - 170) > 6
    np.testing.assert_array_equal(other.argmax(1)[clear], reference.argmax(1)[clear])
    np.testing.assert_allclose(other, reference, atol=0.06 if path == INT8_TFLITE else 1e-5)


def test_int8_model_reports_its_quantization():
    info = load_model(INT8_TFLITE).info()
    assert info["input"]["dtype"] == "uint8"
    assert info["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert info["output"]["dtype"] == "float32" and info["output"]["quantization"] is None


def test_batches_of_any_size_give_the_same_answers():
    model = load_model(INT8_TFLITE)
    pixels = flat_batch(np.arange(0, 256, 8))
    whole = model.predict(pixels)
    np.testing.assert_array_equal(np.concatenate([model.predict(pixels[i:i + 1]) for i in range(len(pixels))]),
                                  whole)
    np.testing.assert_array_equal(model.predict(pixels[:5]), whole[:5])


def test_third_party_model_runs_with_labels_and_its_own_input_shape():
    model = load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"], input_scaling="raw")
    assert model.input_size == (24, 20)  # (height, width) read from the model, not square
    assert model.fixed_batch
    assert model.metadata.threshold is None and model.metadata.needs_review([1, 0, 0]) is None
    probabilities = model.predict(flat_batch([0, 128, 250, 30], size=(24, 20)))  # 4 calls of one image
    assert probabilities.argmax(1).tolist() == [0, 1, 2, 0]


@needs_onnxruntime
def test_third_party_channels_first_rgb_model_gets_grey_tiled_to_rgb():
    model = load_model(THIRD_PARTY_NCHW_ONNX, labels=["dark", "mid", "bright"], input_scaling="raw")
    assert model.input_size == (24, 20) and not model.fixed_batch
    assert model.info()["input"]["shape"] == ["N", 3, 24, 20]
    probabilities = model.predict(flat_batch([0, 128, 250], size=(24, 20)))
    assert probabilities.argmax(1).tolist() == [0, 1, 2]
    reference = load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"], input_scaling="raw")
    np.testing.assert_allclose(probabilities, reference.predict(flat_batch([0, 128, 250], size=(24, 20))),
                               atol=1e-5)


@needs_onnxruntime
def test_third_party_model_wanting_unit_input_and_ending_in_logits_gets_both():
    names = ["dark", "mid", "bright"]
    model = load_model(THIRD_PARTY_UNIT_LOGITS_ONNX, labels=names, input_scaling="unit")
    assert model.metadata.input_scaling == "unit" and model.metadata.extra["output"].startswith("logits")
    pixels = flat_batch([0, 60, 100, 128, 160, 200, 250], size=(24, 20))
    # The same rule on raw pixels with its own softmax: xscreen's scaling and softmax must reproduce it.
    reference = load_model(THIRD_PARTY_NCHW_ONNX, labels=names, input_scaling="raw")
    assert reference.metadata.extra["output"].startswith("probabilities")
    np.testing.assert_allclose(model.predict(pixels), reference.predict(pixels), atol=1e-5)
    assert "input scaling unit" in model.assumptions and "no screening flag" in model.assumptions
    # Fed raw 0..255 (what xscreen did before it asked), every image looks bright.
    raw = load_model(THIRD_PARTY_UNIT_LOGITS_ONNX, labels=names, input_scaling="raw")
    assert raw.predict(pixels).argmax(1).tolist() == [0] + [2] * 6


def test_third_party_model_without_input_scaling_names_the_choices():
    with pytest.raises(ModelContractError, match=r"--input-scaling raw .*unit .*mobilenet_v2 .*imagenet"):
        load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"])


def test_input_scaling_that_contradicts_the_metadata_is_refused():
    assert load_model(FP32_TFLITE, input_scaling="raw").metadata.input_scaling == "raw"
    with pytest.raises(ModelContractError, match="drop --input-scaling unit"):
        load_model(FP32_TFLITE, input_scaling="unit")


def test_metadata_written_before_input_scaling_existed_means_raw():
    old = ModelMetadata(labels=LABELS, input_size=(32, 32)).to_json().replace('"input_scaling": "raw", ', "")
    assert "input_scaling" not in old
    assert ModelMetadata.from_json(old).input_scaling == "raw"
    with pytest.raises(ModelContractError, match="input_scaling must be one of raw, unit"):
        ModelMetadata(labels=LABELS, input_size=(32, 32), input_scaling="zscore")


def test_negative_label_and_threshold_give_a_third_party_model_a_flag():
    model = load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"], input_scaling="raw",
                       negative_label="dark", threshold=0.5)
    assert model.metadata.needs_review([0.9, 0.1, 0.0]) is False
    assert model.metadata.needs_review([0.2, 0.7, 0.1]) is True
    assert "review when 1 - p(dark) >= 0.5" in model.assumptions
    with pytest.raises(ModelContractError, match="--negative-label one of dark, mid, bright"):
        load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"], input_scaling="raw", threshold=0.5)
    with pytest.raises(ModelContractError, match="'healthy' is not one of its labels"):
        load_model(THIRD_PARTY_TFLITE, labels=["dark", "mid", "bright"], input_scaling="raw",
                   negative_label="healthy")
    # A model with metadata takes another operating point the same way.
    assert load_model(FP32_TFLITE, threshold=0.9).metadata.threshold == 0.9


def test_labels_must_be_a_sequence_not_a_string():
    with pytest.raises(TypeError, match="sequence of class names"):
        load_model(THIRD_PARTY_TFLITE, labels="dark,mid,bright")


def test_third_party_model_without_labels_asks_for_them():
    with pytest.raises(ModelContractError, match=r"no xscreen metadata.*--labels"):
        load_model(THIRD_PARTY_TFLITE)


def test_labels_can_only_repeat_a_labelled_models_own_labels():
    assert load_model(FP32_TFLITE, labels=list(LABELS)).labels == LABELS
    # Another order would report healthy films as covid; another name would lose the flag.
    for labels in (["covid", "healthy", "pneumonia"], ["healthy", "pneumonia", "covid19"], ["a", "b", "c"]):
        with pytest.raises(ModelContractError, match=r"names its outputs itself \(healthy,pneumonia,covid\).*--rename"):
            load_model(FP32_TFLITE, labels=labels)


def test_rename_renames_outputs_and_the_flag_follows_the_negative_label():
    model = load_model(FP32_TFLITE, rename={"healthy": "normal", "covid": "covid19"})
    assert model.labels == ("normal", "pneumonia", "covid19")
    assert model.metadata.negative_label == "normal" and model.metadata.threshold == 0.5
    assert model.metadata.needs_review([0.9, 0.05, 0.05]) is False
    assert model.metadata.needs_review([0.1, 0.1, 0.8]) is True
    with pytest.raises(ModelContractError, match="does not have"):
        load_model(FP32_TFLITE, rename={"normal": "healthy"})
    with pytest.raises(ModelContractError, match="same name"):
        load_model(FP32_TFLITE, rename={"healthy": "covid"})


def test_label_count_must_match_outputs():
    with pytest.raises(ModelContractError, match=r"label_mismatch.tflite: 2 labels .* outputs 3"):
        load_model(LABEL_MISMATCH_TFLITE)
    with pytest.raises(ModelContractError, match="4 labels"):
        load_model(THIRD_PARTY_TFLITE, labels=["a", "b", "c", "d"], input_scaling="raw")


def test_other_preprocessing_is_refused():
    with pytest.raises(ModelContractError, match="someone-elses-normalisation"):
        load_model(OTHER_PREPROCESSING_TFLITE)


@pytest.mark.parametrize("name, data", [
    ("model.tflite", b"definitely not a flatbuffer"),
    ("model.tflite", b""),
    ("model.onnx", b"\x08\x07garbage that is not a protobuf graph" * 4),
    ("model.pt", b"\x80\x02pickle"),
])
def test_a_file_that_is_not_a_model_is_refused_naming_it(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelContractError) as caught:
        load_model(path)
    assert str(path) in str(caught.value)


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model("no/such/model.tflite")


def test_missing_runtime_names_the_pip_command(monkeypatch):
    monkeypatch.setattr("importlib.import_module", _import_blocking("ai_edge_litert", "tflite_runtime",
                                                                    "tensorflow", "onnxruntime"))
    with pytest.raises(MissingRuntimeError, match="pip install ai-edge-litert") as caught:
        load_model(INT8_TFLITE)
    # A 32-bit Raspberry Pi OS has no ai-edge-litert wheels: the message names what does install there.
    assert "32-bit ARM" in str(caught.value) and "pip install tflite-runtime 'numpy<2'" in str(caught.value)
    with pytest.raises(MissingRuntimeError, match=r"pip install 'xscreen\[onnx\]'"):
        load_model(FP32_ONNX)


def test_tflite_falls_back_to_the_next_installed_runtime(monkeypatch):
    engine = load_model(INT8_TFLITE)._engine
    # The tensorflow entry, minus the 3 s import of TensorFlow: any importable module, the same engine.
    fallback = tuple(replace(b, module="json", engine=lambda *args: engine) if b.name == "tensorflow" else b
                     for b in _backends.BACKENDS)
    monkeypatch.setattr(_backends, "BACKENDS", fallback)
    monkeypatch.setattr("importlib.import_module", _import_blocking("ai_edge_litert", "tflite_runtime"))
    model = load_model(INT8_TFLITE)
    assert model.backend.startswith("tensorflow ")
    assert model.predict(flat_batch([0, 250])).argmax(1).tolist() == [0, 2]


def test_named_backend_must_fit_the_format():
    with pytest.raises(ModelContractError, match="onnxruntime runs .onnx"):
        load_model(INT8_TFLITE, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        load_model(INT8_TFLITE, backend="tensorrt")


def test_threads_default_to_the_cores_and_can_be_set():
    assert load_model(INT8_TFLITE, threads=1).threads == 1
    assert load_model(INT8_TFLITE).threads >= 1


def test_info_describes_the_model():
    info = load_model(INT8_TFLITE).info()
    assert info["labels"] == list(LABELS)
    assert info["input"]["shape"] == ["N", 32, 32, 1]
    assert info["threshold"] == 0.5 and info["negative_label"] == "healthy"
    assert info["backend"].startswith("ai-edge-litert ")
    assert info["file_size_bytes"] == INT8_TFLITE.stat().st_size
    assert info["metadata"]["model_version"] == "brightness-fixture-1"


def test_predict_refuses_wrong_pixels():
    model = load_model(FP32_TFLITE)
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 1\)"):
        model.predict(np.zeros((1, 32, 32, 1), dtype=np.float32))
    with pytest.raises(ValueError):
        model.predict(np.zeros((1, 24, 32, 1), dtype=np.uint8))


def test_integer_input_quantization_is_applied():
    spec = TensorSpec("image", (None, 4, 4, 1), np.dtype(np.int8), scale=2.0, zero_point=-128)
    lut = model_module._input_lut(spec, "raw", 1, Path("m.tflite"))
    assert lut.dtype == np.int8
    assert lut[0] == -128 and lut[255] == 0 and lut[100] == -78  # q = round(x / 2) - 128
    identity = TensorSpec("image", (None, 4, 4, 1), np.dtype(np.uint8), scale=1.0, zero_point=0)
    assert model_module._input_lut(identity, "raw", 1, Path("m.tflite")) is None


def test_input_scaling_is_applied_before_the_input_quantization():
    # A third-party int8 model that wants [-1, 1]: q = round((x / 127.5 - 1) / (1 / 128)) + 0
    spec = TensorSpec("image", (None, 4, 4, 3), np.dtype(np.int8), scale=1 / 128, zero_point=0)
    lut = model_module._input_lut(spec, "mobilenet_v2", 3, Path("m.tflite"))
    assert lut[0] == -128 and lut[255] == 127 and lut[128] == 1
    floats = TensorSpec("image", (None, 4, 4, 3), np.dtype(np.float32))
    imagenet = model_module._input_lut(floats, "imagenet", 3, Path("m.tflite"))
    assert imagenet.shape == (3, 256)  # one table per RGB channel
    np.testing.assert_allclose(imagenet[:, 255], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
    with pytest.raises(ModelContractError, match="per RGB channel"):
        model_module._input_lut(TensorSpec("image", (None, 4, 4, 1), np.dtype(np.float32)), "imagenet", 1,
                                Path("m.tflite"))
    with pytest.raises(ModelContractError, match="raw 0..255 pixels only"):
        model_module._input_lut(TensorSpec("image", (None, 4, 4, 3), np.dtype(np.uint8)), "unit", 3,
                                Path("m.tflite"))


def test_available_backends_lists_installed_runtimes_without_importing_them():
    tensorflow_was_imported = "tensorflow" in sys.modules
    found = available_backends()
    assert any(name.startswith("ai-edge-litert ") for name in found["tflite"])
    assert any(name.startswith("onnxruntime ") for name in found["onnx"])
    assert ("tensorflow" in sys.modules) == tensorflow_was_imported


def test_default_model_path_explains_when_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(model_module, "BUNDLED_MODEL", tmp_path / "xscreen_int8.tflite")
    with pytest.raises(FileNotFoundError, match="--model"):
        default_model_path()
    monkeypatch.setattr(model_module, "BUNDLED_MODEL", INT8_TFLITE)
    assert default_model_path() == INT8_TFLITE


def _import_blocking(*blocked: str):
    import importlib

    real = importlib.import_module

    def fake(name, package=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return real(name, package)

    return fake


def test_a_file_without_metadata_suggests_keras_alphabetical_order_and_calls_its_assumptions_unchecked():
    # Keras numbers class folders alphabetically: the example must be that order, not another.
    with pytest.raises(ModelContractError, match=r"--labels covid,healthy,pneumonia .*alphabetically"):
        load_model(THIRD_PARTY_TFLITE)
    model = load_model(THIRD_PARTY_TFLITE, labels=("covid", "healthy", "pneumonia"), input_scaling="raw")
    assert "unchecked assumptions" in model.assumptions and "xscreen export" in model.assumptions
