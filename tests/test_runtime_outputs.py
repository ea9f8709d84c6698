"""Models with several outputs: each output found by its shape, whatever order a converter wrote them in."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    CONTRACT_MODELS,
    FP32_TFLITE,
    LABELS,
    SCOPED_FP32_ONNX,
    SCOPED_FP32_TFLITE,
    SCOPED_MODELS,
    film,
    needs_onnxruntime,
    noise,
    save_png,
)

from xscreen.runtime import ModelContractError, ModelMetadata, load_model, screen_files
from xscreen.runtime._backends import TensorSpec
from xscreen.runtime._model import match_outputs


def batch(*images: np.ndarray) -> np.ndarray:
    """Images resized to the fixture models' 32x32 by taking every other pixel of 64x64."""
    return np.stack([image[::2, ::2] for image in images])[..., None]


@pytest.mark.parametrize("path", SCOPED_MODELS)
def test_every_output_is_found_by_its_shape(path):
    model = load_model(path)
    assert model.has_heatmaps and model.has_scope and model.scope_threshold == 1.5
    pixels = batch(film(20), film(120), film(190), 255 - film(20), noise())
    outputs = model.predict_outputs(pixels)
    np.testing.assert_array_equal(outputs.probabilities, model.predict(pixels))
    assert [LABELS[i] for i in outputs.probabilities.argmax(1)[:3]] == ["healthy", "pneumonia", "covid"]
    assert outputs.cam.shape == (5, 4, 4, 3)
    # The bright centre of a film is where the cam puts the evidence, for every class but the zero-weight one.
    heat = outputs.cam[0, :, :, 2]
    assert heat[1:3, 1:3].min() > heat[0].max()
    films, negative, photo = outputs.scope_score[:3], outputs.scope_score[3], outputs.scope_score[4]
    assert films.max() < 0.2 and 7 < negative < 9 and photo > 15


@needs_onnxruntime
def test_output_order_differs_between_files_and_does_not_matter():
    tflite, onnx = load_model(SCOPED_FP32_TFLITE), load_model(SCOPED_FP32_ONNX)
    assert tflite._roles != onnx._roles  # the converters really wrote them in different orders
    pixels = batch(film(40), film(200), noise())
    a, b = tflite.predict_outputs(pixels), onnx.predict_outputs(pixels)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    np.testing.assert_allclose(a.cam, b.cam, atol=1e-4)
    np.testing.assert_allclose(a.scope_score, b.scope_score, rtol=1e-4)


@pytest.mark.parametrize("path", CONTRACT_MODELS)
def test_single_output_models_keep_working(path):
    model = load_model(path)
    assert not model.has_heatmaps and not model.has_scope and model.scope_threshold is None
    assert model.metadata.outputs is None and model.metadata.scope is None  # written before the outputs field
    outputs = model.predict_outputs(batch(film(200)))
    assert outputs.cam is None and outputs.scope_score is None
    assert LABELS[int(outputs.probabilities.argmax())] == "covid"


def spec(*shape) -> TensorSpec:
    return TensorSpec("t", (None, *shape), np.dtype("float32"))


def test_several_outputs_without_metadata_is_a_clear_error():
    metadata = ModelMetadata(labels=LABELS, input_size=(32, 32))
    with pytest.raises(ModelContractError, match="3 outputs and no metadata saying which is which"):
        match_outputs([spec(3), spec(4, 4, 3), spec(2)], metadata, "m.tflite")


def test_a_declared_output_the_model_lacks_is_named():
    metadata = ModelMetadata(labels=LABELS, input_size=(32, 32),
                             outputs={"probabilities": [3], "cam": [7, 7, 3]})
    with pytest.raises(ModelContractError, match=r"cam output of shape \(N, 7, 7, 3\) but none"):
        match_outputs([spec(3), spec(4, 4, 3)], metadata, "m.tflite")


def test_roles_come_from_shapes_not_order():
    metadata = ModelMetadata(labels=LABELS, input_size=(32, 32),
                             outputs={"probabilities": [3], "cam": [4, 4, 3], "scope": [2]})
    assert match_outputs([spec(2), spec(3), spec(4, 4, 3)], metadata, "m") == {
        "probabilities": 1, "cam": 2, "scope": 0}


def test_heatmaps_only_when_asked(tmp_path):
    paths = [save_png(tmp_path / "a.png", film(200)), save_png(tmp_path / "b.png", film(20))]
    model = load_model(SCOPED_FP32_TFLITE)
    assert all(r.heatmap is None for r in screen_files(paths, model))
    results = list(screen_files(paths, model, heatmaps=True))
    assert [r.prediction for r in results] == ["covid", "healthy"]
    # The predicted class's map: covid's weight is 0.2 per grey level; healthy's is 0.
    assert results[0].heatmap.shape == (4, 4) and results[0].heatmap.dtype == np.float32
    assert results[0].heatmap[1:3, 1:3].mean() == pytest.approx(0.2 * 260, abs=2)
    assert np.abs(results[1].heatmap).max() == 0


def test_heatmaps_asked_of_a_model_without_them_are_none(tmp_path):
    path = save_png(tmp_path / "a.png", film(200))
    [result] = screen_files([path], load_model(FP32_TFLITE), heatmaps=True)
    assert result.status == "ok" and result.heatmap is None
