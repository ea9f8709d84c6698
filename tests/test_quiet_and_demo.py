"""Nothing on stderr but errors (native runtime lines, pydicom warnings), and a demo that never overwrites."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import INT8_TFLITE, save_png, two_tone
from test_cli_run import assert_one_line_error, rows, xscreen
from test_decode import _dicom_with_frames_field

from xscreen.runtime import ModelContractError
from xscreen.runtime._backends import TFLiteEngine, native_stderr_captured

REPO = Path(__file__).parents[1]


def xscreen_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from xscreen.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"})


def test_quiet_means_an_empty_stderr_native_lines_and_pydicom_warnings_included(tmp_path):
    pytest.importorskip("pydicom")
    (tmp_path / "scans").mkdir()
    save_png(tmp_path / "scans" / "film.png", two_tone(100))
    _dicom_with_frames_field(tmp_path / "scans" / "odd.dcm", b"1A")  # pydicom warns about this value
    done = xscreen_process("run", tmp_path / "scans", "-m", INT8_TFLITE, "--out", tmp_path / "r.csv", "-q")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    reasons = {Path(r["path"]).name: r["error"] for r in rows(tmp_path / "r.csv")}
    assert reasons == {"film.png": "", "odd.dcm": "damaged DICOM header: NumberOfFrames should be a number "
                                                  "but holds '1A'"}
    info = xscreen_process("info", INT8_TFLITE)
    assert info.returncode == 0 and "XNNPACK" not in info.stderr + info.stdout and info.stderr == ""


def test_native_stderr_is_captured_and_a_load_failure_still_says_why(tmp_path):
    with native_stderr_captured() as captured:
        os.write(2, b"INFO: from native code\n")
    assert captured == ["INFO: from native code\n"]

    class FailingInterpreter:
        def __init__(self, **kwargs):
            os.write(2, b"ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'\n")
            raise ValueError("Model provided has model identifier 'TFL3', should be 'TFL3'")

    fake_runtime = type("runtime", (), {"Interpreter": FailingInterpreter})
    with pytest.raises(ModelContractError) as caught:
        TFLiteEngine(fake_runtime, tmp_path / "m.tflite", INT8_TFLITE.read_bytes(), 1)
    message = str(caught.value)
    assert "the TFLite runtime cannot load it" in message and "FULLY_CONNECTED' version '12'" in message


def test_demo_never_overwrites_a_users_file_and_takes_out(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    save_png(folder / "film.png", two_tone(100))
    (folder / "results.csv").write_text("my own notes\n")
    (folder / "xscreen-results.csv").write_text("an earlier demo\n")
    first = xscreen("demo", folder)
    assert first.exit_code == 0, first.output
    assert (folder / "results.csv").read_text() == "my own notes\n"
    assert (folder / "xscreen-results.csv").read_text() == "an earlier demo\n"
    assert [Path(r["path"]).name for r in rows(folder / "xscreen-results-2.csv")] == ["film.png"]
    chosen = tmp_path / "demo.jsonl"
    assert xscreen("demo", folder, "--out", chosen).exit_code == 0 and len(rows(chosen)) == 1
    assert_one_line_error(xscreen("demo", folder, "--out", folder / "results.csv"), 2, "already exists")
    assert (folder / "results.csv").read_text() == "my own notes\n"


def test_demo_where_its_folder_cannot_be_written_uses_a_temporary_one_and_says_where(tmp_path, monkeypatch):
    from xscreen.runtime import _demo

    (tmp_path / "a_file").write_text("x")
    # What a read-only working folder does to mkdir, for root too (root writes into read-only folders).
    monkeypatch.setattr(_demo, "DEMO_FOLDER", tmp_path / "a_file" / "xscreen-demo")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fallback folder lands in tmp_path
    result = xscreen("demo")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    folder = Path(result.stderr.split("folder: ")[1].split()[0])
    assert folder.parent == tmp_path and folder.name.startswith("xscreen-demo-")
    assert (folder / "README-SYNTHETIC.txt").exists()
    assert len(rows(folder / "xscreen-results.csv")) >= 6
