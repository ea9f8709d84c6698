"""Out-of-scope inputs are named, not scored: DICOM headers, the image score, inverted films.

Real files nobody here wrote: pydicom's own sample DICOMs (in its wheel), pydicom-data's (the
``test`` extra) and scikit-image's bundled photos, read from their installed folders (no download).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FP32_TFLITE,
    SCOPED_FP32_ONNX,
    SCOPED_FP32_TFLITE,
    SCOPED_INT8_TFLITE,
    SCOPED_MODELS,
    cli_runner,
    film,
    noise,
    save_png,
    write_dicom,
)

from xscreen.cli import main
from xscreen.runtime import OutOfScopeError, decode_radiograph, load_model, run_screening, screen_files
from xscreen.runtime._model import ModelOutputs
from xscreen.runtime._scope import INVERTED_REASON, ScopeHead, image_reasons, scope_scores


def _package_folder(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent.joinpath(*parts)


PYDICOM_FILES = _package_folder("pydicom", "data", "test_files")
PYDICOM_DATA_FILES = _package_folder("data_store", "data")  # the pydicom-data distribution
SKIMAGE_PHOTOS = _package_folder("skimage", "data")


def sample_dicom(name: str) -> Path:
    """A sample DICOM shipped with pydicom or pydicom-data; the test skips when neither has it."""
    for folder in (PYDICOM_FILES, PYDICOM_DATA_FILES):
        if folder is not None and (folder / name).is_file():
            return folder / name
    pytest.skip(f"{name} is not installed (pip install pydicom pydicom-data)")


# Real sample files, and words their out-of-scope reason must hold.
HEADER_CASES = {
    "CT_small.dcm": "modality CT is not a chest radiograph",
    "MR_small.dcm": "modality MR is not a chest radiograph",
    "ExplVR_BigEnd.dcm": "modality US is not a chest radiograph",
    "US1_UNCR.dcm": "modality US is not a chest radiograph",
    "JPEG2000.dcm": "secondary capture, not a radiograph (modality NM)",
    "rtdose.dcm": "modality RTDOSE is not a chest radiograph",
    "liver_1frame.dcm": "modality SEG is not a chest radiograph",
    "SC_rgb_rle.dcm": "secondary capture, not a radiograph (modality OT)",
    "SC_jpeg_no_color_transform.dcm": "secondary capture, not a radiograph (conversion type WSD)",
    "RG3_UNCR.dcm": "body part EXTREMITY is not the chest",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "modality MR is not a chest radiograph",
}
CHEST_CR = "RG1_UNCR.dcm"  # pydicom-data: a real computed radiograph, BodyPartExamined CHEST, view PA


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_sample_dicoms_that_are_not_chest_films_are_named_by_their_header(name):
    path = sample_dicom(name)
    with pytest.raises(OutOfScopeError, match=r"^out of scope: .*" + _words(HEADER_CASES[name])):
        decode_radiograph(path, (32, 32), scope_check=True)
    [result] = screen_files([path], load_model(FP32_TFLITE), workers=0)
    assert (result.status, result.prediction, result.flag, result.probabilities) == (
        "out_of_scope", None, None, None)
    assert HEADER_CASES[name] in result.error


def _words(text: str) -> str:
    return "".join("\\" + c if c in "()." else c for c in text)


def test_a_real_chest_radiograph_passes_the_header_rules():
    path = sample_dicom(CHEST_CR)
    assert decode_radiograph(path, (32, 32), scope_check=True).shape == (32, 32)
    [result] = screen_files([path], load_model(FP32_TFLITE), workers=0)
    assert result.status == "ok" and result.prediction is not None


def test_a_lateral_view_of_the_real_chest_radiograph_is_out_of_scope(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(sample_dicom(CHEST_CR))
    ds.ViewPosition = "LL"
    ds.save_as(tmp_path / "lateral.dcm")
    with pytest.raises(OutOfScopeError, match=r"lateral view \(LL\)"):
        decode_radiograph(tmp_path / "lateral.dcm", (32, 32), scope_check=True)


def test_missing_tags_are_never_a_reason(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    path = write_dicom(tmp_path / "bare.dcm", film(100).astype(np.uint16) * 4)
    ds = pydicom.dcmread(path)
    del ds.Modality
    ds.save_as(path)
    assert decode_radiograph(path, (32, 32), scope_check=True).shape == (32, 32)


def test_scope_check_off_decodes_what_the_header_rules_refuse():
    path = sample_dicom("CT_small.dcm")
    assert decode_radiograph(path, (32, 32)).shape == (32, 32)
    [result] = screen_files([path], load_model(FP32_TFLITE), workers=0, scope_check=False)
    assert result.status == "ok"


def test_the_score_is_the_distance_to_the_nearest_class_mean():
    z = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]], dtype=np.float32)
    means = np.array([[0.0, 0.0], [3.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(scope_scores(z, means), [0.0, 2.0, 4.0])


@pytest.mark.parametrize("path", SCOPED_MODELS)
def test_films_are_screened_photos_and_noise_are_out_of_scope(path, tmp_path):
    files = [save_png(tmp_path / f"film{level}.png", film(level, seed=level)) for level in (20, 120, 190)]
    files.append(save_png(tmp_path / "noise.png", noise()))
    results = list(screen_files(files, load_model(path)))
    assert [r.status for r in results] == ["ok", "ok", "ok", "out_of_scope"]
    assert [r.prediction for r in results] == ["healthy", "pneumonia", "covid", None]
    assert all(r.scope_score < 0.5 for r in results[:3])
    photo = results[3]
    assert photo.error.startswith("out of scope: far from the training films (score ")
    assert f"{photo.scope_score:.3g} > 1.5)" in photo.error and photo.flag is None


@pytest.mark.parametrize("path", SCOPED_MODELS)
def test_an_inverted_film_is_named_as_such(path, tmp_path):
    files = [save_png(tmp_path / "film.png", film(30)), save_png(tmp_path / "negative.png", 255 - film(30))]
    film_result, negative = screen_files(files, load_model(path))
    assert film_result.status == "ok"
    assert negative.status == "out_of_scope" and negative.error == INVERTED_REASON


def test_monochrome1_written_as_monochrome2_upstream_is_named_inverted(tmp_path):
    pixels = film(30)
    pixels[0, :2] = 0, 255  # the full range, so the decoder's rescaling to 0..255 leaves the film as it is
    raw = (255 - pixels).astype(np.uint16) * 16  # the film's negative, as a MONOCHROME1 detector stores it
    right = write_dicom(tmp_path / "right.dcm", raw, photometric="MONOCHROME1")
    wrong = write_dicom(tmp_path / "wrong.dcm", raw, photometric="MONOCHROME2")
    good, bad = screen_files([right, wrong], load_model(SCOPED_FP32_TFLITE))
    assert good.status == "ok" and good.prediction == "healthy"
    assert bad.status == "out_of_scope" and "probably inverted" in bad.error


def test_only_out_of_scope_films_pay_a_second_pass(tmp_path):
    model = load_model(SCOPED_FP32_TFLITE)
    seen = []
    predict_outputs = model.predict_outputs
    model.predict_outputs = lambda pixels: seen.append(len(pixels)) or predict_outputs(pixels)
    files = [save_png(tmp_path / f"{i}.png", film(40 * i, seed=i)) for i in range(5)]
    files.insert(2, save_png(tmp_path / "noise.png", noise()))
    results = list(screen_files(files, model, batch_size=6))
    assert [r.status for r in results].count("out_of_scope") == 1
    assert seen == [6, 1]  # one pass for the batch, one for the noise image's negative
    assert list(screen_files(files, model, batch_size=6, scope_check=False)) and seen[2:] == []


def test_without_the_check_everything_is_screened(tmp_path):
    files = [save_png(tmp_path / "noise.png", noise()), save_png(tmp_path / "neg.png", 255 - film(30))]
    results = list(screen_files(files, load_model(SCOPED_INT8_TFLITE), scope_check=False))
    assert [r.status for r in results] == ["ok", "ok"] and all(r.scope_score is None for r in results)


@pytest.mark.skipif(SKIMAGE_PHOTOS is None, reason="scikit-image not installed (the test extra)")
def test_real_photos_are_scored_and_named(tmp_path):
    """Every bundled photo (colour, palette, JPEG, PNG) decodes, is scored, and is judged by colour, then score.

    The fixture's rule (a bright, quiet centre) is crude: a grey photo can pass it. The real
    model's rates on these photos are measured by benchmarks/scope_head.py.
    """
    photos = sorted(p for p in SKIMAGE_PHOTOS.iterdir() if p.suffix in (".png", ".jpg"))
    assert len(photos) >= 20
    results = list(screen_files(photos, load_model(SCOPED_FP32_TFLITE)))
    colour = {"astronaut", "chelsea", "coffee", "color", "logo", "retina", "rocket", "motorcycle_left"}
    for r in results:
        if Path(r.path).stem in colour:
            assert r.status == "out_of_scope" and "photo or colour image" in r.error, (r.path, r.error)
        else:
            assert r.status == ("ok" if r.scope_score <= 1.5 else "out_of_scope"), (r.path, r.error)
        assert r.status == "ok" or r.error.startswith("out of scope: ")
        assert r.error is None or "inverted" not in r.error or Path(r.path).stem not in colour
    assert sum(r.status == "out_of_scope" for r in results) >= 0.8 * len(results)


def test_run_counts_out_of_scope_apart(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    save_png(folder / "a_film.png", film(200))
    save_png(folder / "b_noise.png", noise())
    (folder / "c_broken.png").write_bytes(b"not an image")
    summary = run_screening(folder, load_model(SCOPED_FP32_TFLITE), tmp_path / "out.csv")
    assert (summary.ok, summary.out_of_scope, summary.errors, summary.rows) == (1, 1, 1, 3)
    assert summary.first_out_of_scope[0][0].endswith("b_noise.png") and summary.per_class["covid"] == 1
    with open(tmp_path / "out.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    noise_row = rows[1]
    assert noise_row["path"] == str(folder / "b_noise.png") and noise_row["status"] == "out_of_scope"
    assert noise_row["prediction"] == noise_row["flag"] == "" and noise_row["error"].startswith("out of scope")
    assert float(noise_row["scope_score"]) > 0


def test_cli_strict_fails_on_out_of_scope_and_the_option_turns_the_check_off(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    save_png(folder / "film.png", film(200))
    save_png(folder / "noise.png", noise())
    runner = cli_runner()
    common = ["run", str(folder), "--model", str(SCOPED_FP32_TFLITE), "--strict", "--overwrite"]
    result = runner.invoke(main, [*common, "--out", str(tmp_path / "a.csv")])
    assert result.exit_code == 1, result.output
    assert "out of scope" in result.output and "far from the training films" in result.output
    result = runner.invoke(main, [*common, "--out", str(tmp_path / "b.csv"), "--no-scope-check"])
    assert result.exit_code == 0, result.output
    assert ",out_of_scope," not in (tmp_path / "b.csv").read_text()


def test_info_shows_the_threshold_and_what_it_was_fitted_on():
    result = cli_runner().invoke(main, ["info", str(SCOPED_FP32_TFLITE)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the table's borders, where a line wraps
    assert "score > 1.5" in text and "fitted on none: a fixed rule for tests" in text
    result = cli_runner().invoke(main, ["info", str(FP32_TFLITE)])
    assert "DICOM headers only" in " ".join(result.output.split())


@pytest.mark.parametrize(("tags", "reason"), [
    ({"Modality": "DX", "BodyPartExamined": "Chest", "ViewPosition": "pa"}, None),
    ({"Modality": "cr", "BodyPartExamined": "PORTABLE CHEST"}, None),
    ({"Modality": "DX", "BodyPartExamined": "THORAX", "ViewPosition": "LLD"}, None),  # decubitus: frontal
    ({"Modality": "DX", "ViewPosition": "lat"}, "lateral view (LAT)"),
    ({"Modality": "DX", "BodyPartExamined": "KNEE"}, "body part KNEE is not the chest"),
    ({"Modality": "MG"}, "modality MG is not a chest radiograph"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "ConversionType": "DF"}, None),  # digitized film
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "ConversionType": "SD"}, "(conversion type SD)"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7.4", "Modality": "OT"}, "secondary capture, not a radiograph"),
    ({}, None),
])
def test_header_rules(tags, reason):
    pydicom = pytest.importorskip("pydicom")
    from xscreen.runtime._scope import dicom_header_reason

    ds = pydicom.Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    found = dicom_header_reason(ds)
    assert found is None if reason is None else reason in found, found


def test_info_line_says_which_threshold_is_the_files_and_which_the_keras_models():
    from xscreen.runtime._scope import describe_scope

    line = describe_scope({"threshold": 1.050061, "keras_threshold": 0.952455, "format_ratio": 1.1025,
                           "threshold_rule": "threshold 0.952: the 99.9% quantile", "fitted_on": "9200 films"})
    assert "score > 1.05006 (rule for the Keras model: threshold 0.952" in line
    assert "this file's threshold is the Keras model's 0.952455 x1.1025" in line


def test_a_colour_photo_is_a_photo_not_an_inverted_film(tmp_path):
    """Issue 19.10: the colour rule comes before the distance, so a colour image is never called a negative."""
    grey_film = film(30)
    tinted = np.stack([grey_film, grey_film // 2, 255 - grey_film], axis=2)  # what the old rule called inverted
    files = [save_png(tmp_path / "tinted.png", tinted),
             save_png(tmp_path / "grey_as_rgb.png", np.stack([grey_film] * 3, axis=2))]
    tinted_result, grey_result = screen_files(files, load_model(SCOPED_FP32_TFLITE))
    assert tinted_result.status == "out_of_scope"
    assert tinted_result.error.startswith("out of scope: photo or colour image (mean saturation ")
    assert grey_result.status == "ok"  # a grey film stored as RGB is still a film


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decoding_measures_colour_and_keeps_the_grey_pixels(tmp_path, fmt):
    from PIL import Image

    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[:, :200] = 200, 40, 30  # red and blue halves: a thumbnail keeps their colour
    rgb[:, 200:] = 30, 60, 190
    grey = np.stack([film(90, size=(300, 400))] * 3, axis=2)
    for name, pixels in (("colour", rgb), ("grey", grey)):
        path = tmp_path / f"{name}.{fmt.lower()}"
        Image.fromarray(pixels).save(path, format=fmt)
        facts: dict = {}
        decoded = decode_radiograph(path, (64, 64), facts=facts)
        assert (facts["colour"] > 0.3) if name == "colour" else (facts["colour"] < 0.01), (name, facts)
        with Image.open(path) as im:  # the grey pixels are what a grey-only decode gives
            im.draft("L", (64, 64))
            expected = np.asarray(im.convert("L").resize((64, 64), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(decoded, expected)


class _StubModel:
    """What image_reasons reads of a model: its distance threshold, its head, and a second pass."""

    scope_threshold = 1.5

    def __init__(self, head):
        self.scope_head = head
        self.passes = 0

    def predict_outputs(self, pixels):
        self.passes += 1
        return ModelOutputs(np.zeros((len(pixels), 3), np.float32), None, np.zeros(len(pixels), np.float32))


def _head(bias, threshold=0.5, kinds=("frontal", "lateral", "inverted", "blank")) -> ScopeHead:
    head = {"kinds": list(kinds), "features": 2, "threshold": threshold,
            "weights": [[0.0] * len(kinds), [0.0] * len(kinds), [0.0] * len(kinds)], "bias": bias}
    return ScopeHead.from_metadata(head, scope_size=2)


def test_the_head_names_the_kind_and_needs_no_second_pass():
    pixels = np.stack([film(30)[..., None]] * 4)
    outputs = ModelOutputs(np.zeros((4, 3), np.float32), None, np.array([0.1, 0.1, 0.1, 9.0], np.float32),
                           scope=np.zeros((4, 2), np.float32))
    model = _StubModel(_head([0.0, 3.0, 0.0, 0.0]))  # p(lateral) 0.87: a lateral view
    reasons = image_reasons(model, pixels, outputs, np.array([True, True, False, True]),
                            np.array([0.0, 0.2, 0.0, 0.0], np.float32))
    assert reasons[0] == "out of scope: lateral view (the model reads frontal films; p(not frontal) 0.957 > 0.5)"
    assert reasons[1].startswith("out of scope: photo or colour image")  # colour first
    assert reasons[2] is None  # not decoded
    assert reasons[3].startswith("out of scope: lateral view")  # the head speaks before the distance
    assert model.passes == 0
    # Frontal by the head, but far by the distance: the backstop, and no inverted pass with a head.
    in_scope = _StubModel(_head([5.0, 0.0, 0.0, 0.0]))
    reasons = image_reasons(in_scope, pixels, outputs, np.ones(4, bool))
    assert reasons[:3] == [None, None, None] and reasons[3].startswith("out of scope: far from the training films")
    assert in_scope.passes == 0


def test_the_head_says_inverted_only_when_that_kind_is_likely():
    p_inverted = np.array([0.1, 0.05, 0.8, 0.05], np.float32)
    p_unsure = np.array([0.1, 0.35, 0.3, 0.25], np.float32)  # out of scope, no kind holds half of it
    head = _head([0.0, 0.0, 0.0, 0.0])
    assert head.kind(p_inverted) == "inverted" and head.kind(p_unsure) == "other"
    assert "not a frontal chest film" in head.reason(p_unsure)
    assert head.kind(np.array([0.6, 0.2, 0.1, 0.1], np.float32)) is None


@pytest.mark.parametrize("bad", [
    {"kinds": ["lateral", "frontal"]},
    {"kinds": ["frontal", "dog"]},
    {"weights": [[0.0, 0.0]]},
    {"features": 5},
])
def test_a_malformed_head_is_refused(bad):
    head = {"kinds": ["frontal", "lateral"], "features": 2, "threshold": 0.5,
            "weights": [[0.0, 0.0]] * 3, "bias": [0.0, 0.0], **bad}
    with pytest.raises(ValueError, match="scope head"):
        ScopeHead.from_metadata(head, scope_size=2)


def test_a_model_file_carrying_a_head_applies_it(tmp_path):
    """The head stored in the file's metadata (as benchmarks/scope_head.py --write stores it) decides."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from xscreen.export._metadata import embed_onnx_metadata

    source = load_model(SCOPED_FP32_ONNX)
    files = [save_png(tmp_path / "film.png", film(120))]
    for bias, expected in (([5.0, 0.0], "ok"), ([0.0, 5.0], "out_of_scope")):
        head = {"kinds": ["frontal", "blank"], "features": 2, "threshold": 0.5,
                "weights": [[0.0, 0.0]] * 3, "bias": bias}
        proto = onnx.load(str(source.path))
        embed_onnx_metadata(proto, source.metadata.with_updates(scope={**source.metadata.scope, "head": head}))
        onnx.save(proto, str(tmp_path / "headed.onnx"))
        model = load_model(tmp_path / "headed.onnx")
        assert model.scope_head is not None and model.scope_head.kinds == ("frontal", "blank")
        [result] = screen_files(files, model)
        assert result.status == expected, result.error
        if expected == "out_of_scope":
            assert result.error == "out of scope: blank or nearly uniform (p(not frontal) 0.993 > 0.5)"
    info = cli_runner().invoke(main, ["info", str(tmp_path / "headed.onnx")])
    assert "scope head says p(not a frontal chest film) > 0.5" in " ".join(info.output.replace("│", " ").split())


def test_a_model_file_with_a_malformed_head_is_refused_in_one_line(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from xscreen.export._metadata import embed_onnx_metadata
    from xscreen.runtime import ModelContractError

    source = load_model(SCOPED_FP32_ONNX)
    head = {"kinds": ["frontal", "blank"], "features": 2, "threshold": 0.5, "weights": [[0.0, 0.0]], "bias": [0, 0]}
    proto = onnx.load(str(source.path))
    embed_onnx_metadata(proto, source.metadata.with_updates(scope={**source.metadata.scope, "head": head}))
    onnx.save(proto, str(tmp_path / "bad_head.onnx"))
    with pytest.raises(ModelContractError, match=r"bad_head.onnx: its scope head is malformed: .*weights \(1, 2\)"):
        load_model(tmp_path / "bad_head.onnx")


def test_storing_a_head_in_a_tflite_file_rewrites_its_metadata_in_place(tmp_path):
    """As benchmarks/scope_head.py --write does: the same network, the new metadata, no stale copy left behind."""
    pytest.importorskip("tensorflow")
    from xscreen.export._metadata import embed_tflite_metadata

    source = load_model(SCOPED_FP32_TFLITE)
    head = {"kinds": ["frontal", "blank"], "features": 2, "threshold": 0.5,
            "weights": [[0.0, 0.0]] * 3, "bias": [0.0, 5.0]}
    metadata = source.metadata.with_updates(scope={**source.metadata.scope, "head": head})
    headed = embed_tflite_metadata(SCOPED_FP32_TFLITE.read_bytes(), metadata)
    assert embed_tflite_metadata(headed, metadata) == headed  # stored again: the same bytes, not a second copy
    (tmp_path / "headed.tflite").write_bytes(headed)
    model = load_model(tmp_path / "headed.tflite")
    assert model.scope_head.kinds == ("frontal", "blank")
    pixels = np.stack([film(level)[..., None] for level in (20, 120, 190)])
    pixels = np.stack([decode_radiograph(save_png(tmp_path / f"{i}.png", p[..., 0]), model.input_size)[..., None]
                       for i, p in enumerate(pixels)])
    np.testing.assert_array_equal(model.predict(pixels), source.predict(pixels))
