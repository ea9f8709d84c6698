"""``xscreen run`` and ``xscreen info`` as a user meets them: output file, summary, messages, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FP32_ONNX,
    INT8_TFLITE,
    LABEL_MISMATCH_TFLITE,
    ONNX_MODEL,
    THIRD_PARTY_TFLITE,
    THIRD_PARTY_UNIT_LOGITS_ONNX,
    cli_runner,
    needs_onnxruntime,
    save_png,
)

from xscreen import cli
from xscreen.runtime import _model as model_module
from xscreen.runtime import load_model


def xscreen(*args: str):
    # Wide enough that rich does not wrap the summary table's cells.
    return cli_runner(env={"COLUMNS": "200"}).invoke(cli.main, [str(a) for a in args])


def rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))


def assert_one_line_error(result, exit_code: int, *words: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_run_writes_one_row_per_image_with_the_right_prediction(brightness_folder, tmp_path):
    out = tmp_path / "results.csv"
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "--model", INT8_TFLITE, "--out", out)
    assert result.exit_code == 0, result.output
    got = {row["path"]: row for row in rows(out)}
    assert {p: row["prediction"] for p, row in got.items()} == brightness_folder
    assert all(row["status"] == "ok" and row["error"] == "" for row in got.values())
    assert {row["flag"] for row in got.values() if row["prediction"] == "healthy"} == {"false"}
    assert {row["flag"] for row in got.values() if row["prediction"] != "healthy"} == {"true"}
    summary = " ".join(result.stdout.split())
    for text in ["predicted healthy │ 4", "predicted covid │ 4", "flagged for review │ 8", "errors │ 0",
                 "images/s", "not a medical device", f"results: {out}"]:
        assert text in summary, summary


def test_margin_says_how_far_each_film_is_from_flipping_its_flag(brightness_folder, tmp_path):
    out = tmp_path / "results.csv"
    assert xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE, "--out", out).exit_code == 0
    threshold = load_model(INT8_TFLITE).metadata.threshold
    for row in rows(out):
        margin = float(row["margin"])
        assert margin == pytest.approx(1 - float(row["prob_healthy"]) - threshold, abs=2e-6)
        assert (margin >= 0) == (row["flag"] == "true")


def test_progress_is_plain_lines_when_not_a_terminal(brightness_folder, tmp_path):
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE,
                     "--out", tmp_path / "r.csv")
    assert "screened 12/12 (100%)" in result.stderr


def test_quiet_prints_nothing(brightness_folder, tmp_path):
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE,
                     "--out", tmp_path / "r.csv", "--quiet")
    assert result.exit_code == 0 and result.output == ""
    assert len(rows(tmp_path / "r.csv")) == 12


@pytest.mark.parametrize("model", [ONNX_MODEL, INT8_TFLITE], ids=lambda p: getattr(p, "suffix", None))
def test_jsonl_output(brightness_folder, tmp_path, model):
    out = tmp_path / "results.jsonl"
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", model, "--out", out, "-q",
                     "--threads", "1")
    assert result.exit_code == 0
    assert {row["path"]: row["prediction"] for row in rows(out)} == brightness_folder


def test_every_bad_file_gets_exactly_one_error_row_and_strict_exits_1(bad_files, tmp_path):
    folder = Path(next(iter(bad_files))).parent
    out = tmp_path / "results.csv"
    result = xscreen("run", folder, "-m", INT8_TFLITE, "--out", out)
    assert result.exit_code == 0
    written = rows(out)
    assert sorted(row["path"] for row in written) == sorted(bad_files)
    for row in written:
        assert row["status"] == "error" and bad_files[row["path"]] in row["error"]
    assert "error " in result.stdout and "errors │ " + str(len(bad_files)) in " ".join(result.stdout.split())

    strict = xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "--overwrite", "--strict", "-q")
    assert strict.exit_code == 1


def test_existing_output_is_not_overwritten_by_accident(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    out = tmp_path / "results.csv"
    out.write_text("precious\n")
    assert_one_line_error(xscreen("run", folder, "-m", INT8_TFLITE, "--out", out), 2, "--resume", "--overwrite")
    assert out.read_text() == "precious\n"
    assert_one_line_error(xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "--resume", "--overwrite"), 2)
    assert xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "--overwrite", "-q").exit_code == 0
    assert len(rows(out)) == 12


def test_default_output_is_results_csv_in_the_current_folder(brightness_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE, "-q").exit_code == 0
    assert len(rows(tmp_path / "results.csv")) == 12


@pytest.mark.parametrize("name, data, words", [
    ("model.tflite", b"this is a text file", ["model.tflite", "not a usable TFLite model"]),
    ("model.onnx", b"\x00garbage" * 10, ["model.onnx", "onnxruntime cannot load it"]),
    ("model.h5", b"HDF", ["model.h5 is a Keras model", "model.h5 --labels"]),
    ("seed.keras", b"PK", ["seed.keras is a Keras model", "convert it first with `xscreen export", "--input-scaling"]),
    ("model.pt", b"\x80", ["unknown model format '.pt'"]),
])
def test_a_bad_model_file_is_one_line_and_exit_2(brightness_folder, tmp_path, name, data, words):
    model = tmp_path / name
    model.write_bytes(data)
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", model, "--out", tmp_path / "r.csv")
    assert_one_line_error(result, 2, *words)
    assert not (tmp_path / "r.csv").exists()


def test_metadata_that_disagrees_with_the_model_is_exit_2(brightness_folder, tmp_path):
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", LABEL_MISMATCH_TFLITE,
                     "--out", tmp_path / "r.csv")
    assert_one_line_error(result, 2, "2 labels", "outputs 3")


def test_third_party_model_needs_and_takes_labels_and_input_scaling(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    assert_one_line_error(xscreen("run", folder, "-m", THIRD_PARTY_TFLITE, "--out", tmp_path / "r.csv"), 2,
                          "--labels")
    # No silent default for what the model's input expects: the one line names the four choices.
    assert_one_line_error(xscreen("run", folder, "-m", THIRD_PARTY_TFLITE, "--labels", "dark,mid,bright",
                                  "--out", tmp_path / "r.csv"), 2,
                          "--input-scaling raw", "unit", "mobilenet_v2", "imagenet")
    assert not (tmp_path / "r.csv").exists()
    result = xscreen("run", folder, "-m", THIRD_PARTY_TFLITE, "--labels", "dark, mid ,bright",
                     "--input-scaling", "raw", "--out", tmp_path / "r.csv", "-q")
    assert result.exit_code == 0
    expected = {"healthy": "dark", "pneumonia": "mid", "covid": "bright"}
    assert {r["path"]: r["prediction"] for r in rows(tmp_path / "r.csv")} == \
        {p: expected[label] for p, label in brightness_folder.items()}
    assert set(rows(tmp_path / "r.csv")[0]) >= {"prob_dark", "prob_mid", "prob_bright"}


def test_a_missing_runtime_names_the_pip_command(brightness_folder, tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, package=None: _raise(ImportError(name)) if name == "onnxruntime"
                        else real(name, package))
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", FP32_ONNX, "--out", tmp_path / "r.csv")
    assert_one_line_error(result, 2, "pip install 'xscreen[onnx]'")


def test_a_folder_without_images_is_exit_2_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    result = xscreen("run", tmp_path / "empty", "-m", INT8_TFLITE, "--out", tmp_path / "r.csv")
    assert_one_line_error(result, 2, str(tmp_path / "empty"), ".png", ".dcm")


def test_missing_target_and_unknown_output_format_are_usage_errors(tmp_path):
    assert xscreen("run", tmp_path / "nowhere", "-m", INT8_TFLITE).exit_code == 2
    assert_one_line_error(xscreen("run", tmp_path, "-m", INT8_TFLITE, "--out", tmp_path / "r.xlsx"), 2,
                          ".csv or .jsonl")


def test_an_output_that_cannot_be_written_is_exit_2(brightness_folder, tmp_path):
    (tmp_path / "a_file").write_text("x")
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE,
                     "--out", tmp_path / "a_file" / "results.csv")
    assert_one_line_error(result, 2, "a_file")


def test_the_bundled_model_is_the_default_and_its_absence_is_explained(brightness_folder, tmp_path, monkeypatch):
    folder = Path(next(iter(brightness_folder))).parent
    monkeypatch.setattr(model_module, "BUNDLED_MODEL", tmp_path / "models" / "xscreen_int8.tflite")
    assert_one_line_error(xscreen("run", folder, "--out", tmp_path / "r.csv"), 2, "no bundled model", "--model")
    assert_one_line_error(xscreen("info"), 2, "no bundled model")
    monkeypatch.setattr(model_module, "BUNDLED_MODEL", INT8_TFLITE)
    assert xscreen("run", folder, "--out", tmp_path / "r.csv", "-q").exit_code == 0
    assert xscreen("info").exit_code == 0


def test_ctrl_c_says_how_to_finish(brightness_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "screen_and_report", lambda *a, **k: _raise(KeyboardInterrupt()))
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE,
                     "--out", tmp_path / "r.csv")
    assert result.exit_code == 130 and "--resume" in result.stderr


def test_info_describes_the_model():
    result = xscreen("info", INT8_TFLITE)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for words in ["healthy, pneumonia, covid", "uint8, quantized: scale 1, zero point 0",
                  "needs review when 1 - p(healthy) >= 0.5", "ai-edge-litert", "brightness-fixture-1"]:
        assert words in text, text


@needs_onnxruntime
def test_a_notebook_style_model_is_screened_with_what_was_assumed_in_the_summary(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    result = xscreen("run", folder, "-m", THIRD_PARTY_UNIT_LOGITS_ONNX, "--labels", "healthy,pneumonia,covid",
                     "--input-scaling", "unit", "--negative-label", "healthy", "--threshold", "0.5",
                     "--out", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    screened = rows(tmp_path / "r.csv")
    assert {r["path"]: r["prediction"] for r in screened} == brightness_folder
    assert {r["flag"] for r in screened if r["prediction"] == "healthy"} == {"false"}
    assert {r["flag"] for r in screened if r["prediction"] != "healthy"} == {"true"}
    text = " ".join(result.stdout.split())
    for words in ["has no xscreen metadata; assumed labels healthy, pneumonia, covid",
                  "input scaling unit ([0, 1]: x / 255)", "output logits, softmax applied by xscreen",
                  "review when 1 - p(healthy) >= 0.5", "flagged for review"]:
        assert words in text, text
    info = xscreen("info", THIRD_PARTY_UNIT_LOGITS_ONNX, "--labels", "a,b,c", "--input-scaling", "unit")
    assert info.exit_code == 0 and "input scaling unit" in " ".join(info.stdout.split())
    assert_one_line_error(xscreen("info", THIRD_PARTY_UNIT_LOGITS_ONNX, "--labels", "a,b,c"), 2,
                          "--input-scaling raw")


@needs_onnxruntime
def test_info_json():
    described = json.loads(xscreen("info", FP32_ONNX, "--json").stdout)
    assert described["labels"] == ["healthy", "pneumonia", "covid"]
    assert described["backend"].startswith("onnxruntime ")
    assert described["input"]["shape"] == ["N", 32, 32, 1]


def test_screening_never_imports_tensorflow(brightness_folder, tmp_path):
    out = tmp_path / "r.csv"
    folder = str(Path(next(iter(brightness_folder))).parent)
    code = f"""
import importlib.util
import sys
from xscreen.cli import main
main(["run", {folder!r}, "-m", {str(INT8_TFLITE)!r},
      "--out", {str(out)!r}, "-q"], standalone_mode=False)
main(["info", {str(INT8_TFLITE)!r}, "--json"], standalone_mode=False)
if importlib.util.find_spec("onnxruntime"):
    main(["run", {folder!r}, "-m", {str(FP32_ONNX)!r}, "--out", {str(out.with_suffix(".jsonl"))!r}, "-q"],
         standalone_mode=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "onnx", "tf2onnx", "matplotlib"))
print("HEAVY", heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
    assert len(rows(out)) == 12


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory) -> Path:
    """240 images that each take ~10 ms to decode (2000 x 2000 PNG), hard links of 4 sources."""
    root = tmp_path_factory.mktemp("slow")
    ramp = (np.add.outer(np.arange(2000), np.arange(2000)) % 256).astype(np.uint8)
    sources = [save_png(root.parent / f"{root.name}_src{i}.png", img)
               for i, img in enumerate([ramp // 4, ramp // 2 + 30, ramp, ramp // 2 + 128])]
    for i in range(240):
        os.link(sources[i % 4], root / f"scan{i:04d}.png")
    return root


def test_a_killed_run_resumes_to_exactly_the_clean_result(slow_folder, tmp_path):
    clean = tmp_path / "clean.csv"
    assert xscreen("run", slow_folder, "-m", INT8_TFLITE, "--out", clean, "-q").exit_code == 0
    clean_rows = rows(clean)
    assert len(clean_rows) == 240 and {r["prediction"] for r in clean_rows} == {"healthy", "pneumonia", "covid"}

    out = tmp_path / "killed.csv"
    run = subprocess.Popen(
        [sys.executable, "-c", "from xscreen.cli import main; main()", "run", str(slow_folder),
         "-m", str(INT8_TFLITE), "--out", str(out), "--workers", "1", "--batch-size", "4", "-q"],
    )
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= 9:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    run.wait(timeout=30)
    partial = out.read_bytes().count(b"\n") - 1
    killed_part_way = run.returncode == -signal.SIGKILL and partial < 240

    resumed = xscreen("run", slow_folder, "-m", INT8_TFLITE, "--out", out, "--resume")
    assert resumed.exit_code == 0
    paths = [r["path"] for r in rows(out)]
    assert len(paths) == len(set(paths)) == 240  # every file exactly once
    assert out.read_bytes() == clean.read_bytes()
    if killed_part_way:
        assert f"rows from earlier runs (--resume) │ {partial}" in " ".join(resumed.stdout.split())


def test_resume_after_a_torn_last_row(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    clean = tmp_path / "clean.csv"
    assert xscreen("run", folder, "-m", INT8_TFLITE, "--out", clean, "-q").exit_code == 0
    torn = tmp_path / "torn.csv"
    data = clean.read_bytes()
    torn.write_bytes(data[: len(data) - 25])  # the last row cut in the middle
    resumed = xscreen("run", folder, "-m", INT8_TFLITE, "--out", torn, "--resume")
    assert resumed.exit_code == 0
    summary = " ".join(resumed.stdout.split())
    # The counts cover the whole file, the 11 rows kept from the first run included.
    for text in ["12 files: 12 screened, 0 errors", "rows from earlier runs (--resume) │ 11",
                 "predicted healthy │ 4", "flagged for review │ 8", "this run: 1 image in"]:
        assert text in summary, summary
    assert torn.read_bytes() == data


def _raise(exc: BaseException):
    raise exc
