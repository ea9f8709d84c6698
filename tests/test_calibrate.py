"""xscreen calibrate: a site's labelled films recalibrate the model, the result is one file every command applies.

The sites are made of fixture films for the scoped models (class by mean brightness: < 85 healthy,
85..170 pneumonia; scope z0 = (centre contrast - 60) / 30), shifted the way a new hospital's films are.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import (
    SCOPED_FP32_ONNX,
    SCOPED_FP32_TFLITE,
    SCOPED_INT8_TFLITE,
    THIRD_PARTY_TFLITE,
    THIRD_PARTY_UNIT_LOGITS_ONNX,
    cli_runner,
    needs_onnxruntime,
    save_png,
)

from xscreen.calibrate import calibrate_site, cross_validate
from xscreen.cli import main
from xscreen.runtime import ModelContractError, load_model, read_record
from xscreen.runtime._contract import ModelMetadata
from xscreen.runtime._tflite_metadata import read_tflite_metadata, replace_tflite_metadata


def site_film(mean: float, contrast: float = 60.0, seed: int = 0) -> np.ndarray:
    """64x64 film of this mean brightness whose middle half is ``contrast`` levels brighter than its border."""
    rng = np.random.default_rng(seed)
    border = mean - contrast / 4  # the centre is a quarter of the area
    pixels = np.full((64, 64), border)
    pixels[16:48, 16:48] += contrast
    pixels += rng.normal(0, 2, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# A hospital whose healthy films the model reads as pneumonia: all brighter than its 85 boundary.
SHIFTED = {"healthy": lambda rng: (rng.uniform(92, 108), 60.0), "pneumonia": lambda rng: (rng.uniform(128, 160), 60.0)}
# A hospital where brightness says little and the centre contrast (a pooled feature) says the class.
BY_CONTRAST = {"healthy": lambda rng: (rng.uniform(80, 95), 30.0), "pneumonia": lambda rng: (rng.uniform(82, 97), 90.0)}


def make_site(folder, recipe: dict, per_label: dict[str, int], seed: int = 0, films_per_patient: int = 1):
    """A labelled folder (one sub-folder per label, manifest.csv with patients) drawn from ``recipe``."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in per_label.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mean, contrast = recipe[label](rng)
            name = f"{label}/{label}-{i:03d}.png"
            save_png(folder / name, site_film(mean, contrast, seed=int(rng.integers(1 << 30))))
            rows.append({"file": name, "label": label, "group": f"{label}-patient-{i // films_per_patient}"})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["file", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def new_films(recipe: dict, n: int, seed: int, size: tuple[int, int] = (32, 32)):
    """Pixels (2n, H, W, 1) and true labels of fresh films of the same site, as the model takes them."""
    from xscreen.runtime._decode import resize_grey

    rng = np.random.default_rng(seed)
    pixels, truth = [], []
    for label in recipe:
        for _ in range(n):
            mean, contrast = recipe[label](rng)
            pixels.append(resize_grey(site_film(mean, contrast, int(rng.integers(1 << 30))), size))
            truth.append(label)
    return np.stack(pixels)[..., None], truth


def accuracy(model, pixels, truth) -> float:
    predicted = [model.labels[i] for i in model.predict(pixels).argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


def test_shifted_site_gets_better_and_the_file_applies_it_with_no_flag(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 12, "pneumonia": 12})
    out = tmp_path / "site_model.tflite"
    result = cli_runner().invoke(main, ["calibrate", str(site), "--model", str(SCOPED_FP32_TFLITE), "--out", str(out)])
    assert result.exit_code == 0, result.output + str(result.stderr)
    assert "fewer than 20" in result.output  # 12 per class: a warning, not a refusal
    report = json.loads((tmp_path / "site_model.tflite.calibration.json").read_text())
    assert report["before"]["per_class"]["healthy"]["recall"] < 0.1
    assert report["after"]["macro_f1"] > report["before"]["macro_f1"] + 0.4
    assert report["cross_validation"]["chosen"] != "as is"
    assert report["out"]["max_difference_vs_in_memory"] < 1e-4

    # New films of the same site, through the written file opened as any command opens it.
    pixels, truth = new_films(SHIFTED, 20, seed=7)
    assert accuracy(load_model(SCOPED_FP32_TFLITE), pixels, truth) <= 0.55
    assert accuracy(load_model(out), pixels, truth) >= 0.95
    assert load_model(out).metadata.threshold == pytest.approx(report["threshold"]["value"])

    run = cli_runner().invoke(main, ["run", str(site), "--model", str(out), "--out", str(tmp_path / "r.csv"), "-q",
                                     "--report", str(tmp_path / "r.html")])
    assert run.exit_code == 0, run.output
    assert "site calibration" in (tmp_path / "r.html").read_text()
    assert read_record(tmp_path / "r.csv")["model_sha256"] == report["out"]["sha256"]
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    right = sum(row["prediction"] == row["path"].split("/")[-2] for row in rows)
    assert right >= 0.9 * len(rows)

    info = cli_runner().invoke(main, ["info", str(out)])
    assert "site calibration" in info.output and "12 healthy, 12 pneumonia" in info.output.replace("\n", " ")
    described = json.loads(cli_runner().invoke(main, ["info", str(out), "--json"]).output)
    assert described["metadata"]["schema_version"] == 2
    assert described["calibration"]["record"]["films_per_label"] == {"healthy": 12, "pneumonia": 12}
    plain = json.loads(cli_runner().invoke(main, ["info", str(SCOPED_FP32_TFLITE), "--json"]).output)
    assert plain["calibration"] is None and plain["metadata"]["schema_version"] == 1


def test_feature_head_fixes_what_biases_cannot(tmp_path):
    site = make_site(tmp_path / "site", BY_CONTRAST, {"healthy": 20, "pneumonia": 20})
    model = load_model(SCOPED_FP32_TFLITE)
    outcome = calibrate_site(site, model, tmp_path / "m.tflite", resamples=50)
    scores = outcome.result["cross_validation"]["candidates"]
    assert "feature head" in outcome.result["cross_validation"]["chosen"]
    assert scores["bias + temperature"]["macro_f1"] < 0.8
    assert outcome.result["after"]["macro_f1"] >= 0.9
    pixels, truth = new_films(BY_CONTRAST, 20, seed=3)
    assert accuracy(load_model(tmp_path / "m.tflite"), pixels, truth) >= 0.9


def test_fewer_than_five_films_of_a_label_refuses_with_one_line(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 4, "pneumonia": 10})
    out = tmp_path / "m.tflite"
    result = cli_runner().invoke(main, ["calibrate", str(site), "--model", str(SCOPED_FP32_TFLITE), "--out", str(out)])
    assert result.exit_code == 2
    assert "at least 5 films" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_label_the_site_lacks_keeps_its_probability_exactly(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 10, "pneumonia": 10})
    outcome = calibrate_site(site, load_model(SCOPED_INT8_TFLITE), tmp_path / "m.tflite", resamples=50)
    assert outcome.result["not_checked"] == ["covid"]
    assert "Not checked: covid" in outcome.report_files[0].read_text()
    before, after = load_model(SCOPED_INT8_TFLITE), load_model(tmp_path / "m.tflite")
    from xscreen.runtime._decode import resize_grey

    pixels = np.stack([resize_grey(site_film(m), (32, 32)) for m in np.linspace(60, 240, 25)])[..., None]
    covid = before.labels.index("covid")
    np.testing.assert_allclose(after.predict(pixels)[:, covid], before.predict(pixels)[:, covid], atol=1e-6)
    assert after.predict(pixels).sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    assert after.predict(pixels[-3:]).argmax(axis=1).tolist() == [covid] * 3  # still finds the bright films


@pytest.mark.parametrize("seed", range(4))
def test_cross_validation_never_picks_worse_than_the_model_as_is(tmp_path, seed):
    # Labels that have nothing to do with the films: nothing to learn, and what is chosen must not lose.
    coin = {"healthy": lambda rng: (rng.uniform(60, 160), rng.uniform(30, 90)),
            "pneumonia": lambda rng: (rng.uniform(60, 160), rng.uniform(30, 90))}
    site = make_site(tmp_path / "site", coin, {"healthy": 10, "pneumonia": 10}, seed=seed, films_per_patient=2)
    model = load_model(SCOPED_FP32_TFLITE)
    from xscreen.calibrate import read_site_films

    films = read_site_films(site, model)
    cv = cross_validate(films.probabilities, films.as_is, films.features, films.y, films.groups, model.labels,
                        ("healthy", "pneumonia"), 1.0, seed)
    chosen = cv.scores[cv.chosen.name]
    assert chosen["macro_f1"] >= cv.scores["as is"]["macro_f1"]
    assert chosen["log_loss"] <= cv.scores["as is"]["log_loss"]
    # Patients never straddle folds.
    fold_of = {}
    for group, fold in zip(films.groups, cv.folds):
        assert fold_of.setdefault(group, fold) == fold


def test_evaluate_only_writes_the_report_and_no_model(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 6, "pneumonia": 6})
    result = cli_runner().invoke(main, ["calibrate", str(site), "--model", str(SCOPED_FP32_TFLITE), "--evaluate-only",
                                        "--out", str(tmp_path / "check")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "check.evaluation.md").read_text()
    assert "Local validation" in text and "Not a medical device" in text
    assert list(tmp_path.glob("*.tflite")) == []


@needs_onnxruntime
def test_onnx_file_is_written_without_the_onnx_package_and_applies_it(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 8, "pneumonia": 8})
    out = tmp_path / "site.onnx"
    outcome = calibrate_site(site, load_model(SCOPED_FP32_ONNX), out, resamples=50)
    assert outcome.result["out"]["max_difference_vs_in_memory"] < 1e-4
    again = calibrate_site(site, load_model(out), tmp_path / "again.onnx", resamples=50)  # recalibrating replaces it
    assert load_model(tmp_path / "again.onnx").calibration is not None
    assert again.result["out"]["max_difference_vs_in_memory"] < 1e-4
    pixels, truth = new_films(SHIFTED, 10, seed=5)
    assert accuracy(load_model(out), pixels, truth) >= 0.9


def test_output_must_be_a_new_file_of_the_same_format(tmp_path):
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 6, "pneumonia": 6})
    for out, says in ((tmp_path / "m.onnx", "must be a .tflite"), (SCOPED_FP32_TFLITE, "exists")):
        result = cli_runner().invoke(main, ["calibrate", str(site), "--model", str(SCOPED_FP32_TFLITE),
                                            "--out", str(out)])
        assert result.exit_code == 2 and says in result.stderr


def test_tflite_metadata_is_replaced_keeping_the_network_and_other_entries(tmp_path):
    original = THIRD_PARTY_TFLITE.read_bytes()  # a file with no xscreen entry: the entry is added
    once = replace_tflite_metadata(original, "site-note", b'{"a": 1}')
    twice = replace_tflite_metadata(once, "site-note", b'{"a": 2}')
    entries = read_tflite_metadata(twice)
    assert entries["site-note"] == b'{"a": 2}'
    assert {k: v for k, v in entries.items() if k != "site-note"} == read_tflite_metadata(original)
    path = tmp_path / "copy.tflite"
    path.write_bytes(twice)  # a flatbuffer the runtime opens, computing what the original computes
    pixels = np.random.default_rng(0).integers(0, 256, (2, 24, 20, 1), dtype=np.uint8)
    kwargs = {"labels": ("healthy", "pneumonia", "covid"), "input_scaling": "raw"}
    np.testing.assert_array_equal(load_model(path, **kwargs).predict(pixels),
                                  load_model(THIRD_PARTY_TFLITE, **kwargs).predict(pixels))


def test_a_calibration_that_does_not_fit_the_model_is_refused(tmp_path):
    from xscreen.runtime._model_file import write_model_with_metadata

    meta = load_model(SCOPED_FP32_TFLITE).metadata
    bad = {"checked": ["healthy", "pneumonia"], "temperature": 1.0, "bias": [0.0, 0.0],
           "head": [[0.0, 0.0]] * 5, "record": {}}  # the scope output has 2 values, not 5
    write_model_with_metadata(SCOPED_FP32_TFLITE, tmp_path / "bad.tflite",
                              meta.with_updates(calibration=bad, schema_version=2))
    with pytest.raises(ModelContractError, match="feature head"):
        load_model(tmp_path / "bad.tflite")
    with pytest.raises(ModelContractError, match="schema_version 2"):
        ModelMetadata(labels=("a", "b"), input_size=(4, 4), calibration=bad)


@needs_onnxruntime
def test_a_model_without_metadata_gets_biases_and_threshold_and_keeps_its_softmax(tmp_path):
    # A notebook's model: no metadata, [0, 1] input, logits out (the softmax is xscreen's); no pooled features.
    site = make_site(tmp_path / "site", SHIFTED, {"healthy": 10, "pneumonia": 10})
    out = tmp_path / "site.onnx"
    result = cli_runner().invoke(main, ["calibrate", str(site), "--model", str(THIRD_PARTY_UNIT_LOGITS_ONNX),
                                        "--out", str(out), "--labels", "healthy,pneumonia,covid",
                                        "--input-scaling", "unit", "--negative-label", "healthy",
                                        "--threshold", "0.5"])
    assert result.exit_code == 0, result.output + str(result.stderr)
    report = json.loads((tmp_path / "site.onnx.calibration.json").read_text())
    assert "feature head" not in report["cross_validation"]["chosen"]
    assert "no pooled-feature" in " ".join(report["advice"])
    calibrated = load_model(out)  # no --labels now: the file names them
    assert calibrated.calibration is not None and calibrated.labels == ("healthy", "pneumonia", "covid")
    pixels, truth = new_films(SHIFTED, 10, seed=9, size=calibrated.input_size)
    probabilities = calibrated.predict(pixels)
    assert probabilities.min() >= 0 and probabilities.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
    assert accuracy(calibrated, pixels, truth) >= 0.9


def test_the_site_threshold_sits_below_a_saturated_score():
    from xscreen.calibrate._calibrate import _threshold

    abnormal = np.array([True, True, True, False, False])
    score = np.array([1.0, 1.0, 1.0, 0.4, 0.2])  # a model that saturates: every abnormal film exactly 1.0
    threshold = _threshold(abnormal, score, 0.95)
    assert threshold == pytest.approx(0.7)  # halfway to the next lower score: a new 0.9999 film is still flagged
    assert _threshold(abnormal, np.array([0.9, 0.8, 0.7, 0.1, 0.0]), 0.95) == pytest.approx(0.4)
