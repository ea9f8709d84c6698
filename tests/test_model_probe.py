"""A .tflite file the runtime would crash on is one error line, found by opening it in a child process first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import INT8_TFLITE, SCOPED_INT8_TFLITE, save_png, two_tone

from xscreen.runtime import ModelContractError, _probe, load_model
from xscreen.runtime._model import BUNDLED_MODEL

pytest.importorskip("ai_edge_litert", reason="needs the TFLite runtime (ai-edge-litert)")


def damaged(folder: Path) -> Path:
    """benchmarks/fuzz.py's finding: byte 2584 (an operator's options type) 27 -> 11 loads, then aborts the
    runtime in allocate_tensors at batch 1."""
    data = bytearray(SCOPED_INT8_TFLITE.read_bytes())
    assert data[2584] == 27, "the fixture model changed: find the options-type byte again"
    data[2584] = 11
    path = folder / "damaged.tflite"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def probes(monkeypatch, tmp_path) -> list[list[str]]:
    """A fresh cache; records each child process the probe starts (and still starts it)."""
    monkeypatch.setenv("XSCREEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XSCREEN_NO_MODEL_PROBE", raising=False)
    started: list[list[str]] = []
    run = subprocess.run

    def counting(command, **kwargs):
        started.append(command)
        return run(command, **kwargs)

    monkeypatch.setattr(_probe.subprocess, "run", counting)
    return started


def xscreen(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a child process: a crash there fails the test instead of killing pytest."""
    return subprocess.run([sys.executable, "-c", "from xscreen.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_the_reproducer_crashes_the_runtime_without_the_probe(tmp_path):
    # What the probe guards against: without it the same load and one prediction abort the process.
    code = ("import sys, numpy as np; from xscreen.runtime import load_model; m = load_model(sys.argv[1]); "
            "m.predict(np.zeros((1, *m.input_size, 1), np.uint8))")
    done = subprocess.run([sys.executable, "-c", code, str(damaged(tmp_path))], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "XSCREEN_NO_MODEL_PROBE": "1"})
    assert done.returncode < 0, (done.returncode, done.stderr[-500:])


@pytest.mark.parametrize("command", ["info", "run"])
def test_a_model_that_aborts_the_runtime_is_one_line_and_exit_2(tmp_path, command):
    model = damaged(tmp_path)
    if command == "info":
        args = ["info", str(model)]
    else:
        save_png(tmp_path / "film.png", two_tone(100))
        args = ["run", str(tmp_path / "film.png"), "--model", str(model), "--out", str(tmp_path / "out.csv")]
    done = xscreen(*args, env={"XSCREEN_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2, (done.returncode, done.stderr[-800:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(model) in lines[0] and "aborted (SIGABRT)" in lines[0] and "xscreen export" in lines[0], lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_a_good_model_is_probed_once_then_remembered(probes, tmp_path):
    model = tmp_path / "copy.tflite"
    shutil.copyfile(INT8_TFLITE, model)
    first = load_model(model, threads=1)
    assert len(probes) == 1 and str(model) in probes[0]
    cached = (tmp_path / "cache" / "checked-models.txt").read_text().split()
    assert cached[0] == first.sha256  # the hash the probe computed is the model's own
    load_model(model, threads=1)
    # The same bytes elsewhere (a Ray actor writes the driver's model to a temp file) are not probed again.
    elsewhere = tmp_path / "actor" / "model.tflite"
    elsewhere.parent.mkdir()
    shutil.copyfile(model, elsewhere)
    again = load_model(elsewhere, threads=1)
    assert len(probes) == 1
    pixels = np.zeros((2, *again.input_size, 1), np.uint8)
    np.testing.assert_allclose(again.predict(pixels), first.predict(pixels))


def test_an_unwritable_cache_checks_again_and_never_fails(probes, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XSCREEN_CACHE_DIR", str(blocker / "cache"))  # mkdir under a file fails, even as root
    for _ in range(2):
        model = load_model(INT8_TFLITE, threads=1)
        assert model.predict(np.zeros((1, *model.input_size, 1), np.uint8)).shape == (1, 3)
    assert len(probes) == 2


def test_the_env_var_and_the_bundled_model_skip_the_probe(probes, monkeypatch):
    monkeypatch.setenv("XSCREEN_NO_MODEL_PROBE", "1")
    load_model(INT8_TFLITE, threads=1)
    assert probes == []
    monkeypatch.delenv("XSCREEN_NO_MODEL_PROBE")
    if BUNDLED_MODEL.is_file():
        load_model(BUNDLED_MODEL, threads=1)
        assert probes == []


def test_an_ordinary_failure_in_the_child_is_its_own_clear_line(probes, tmp_path):
    # A damaged zero point (a fuzzing case): the child's clear error is raised here, and the file is not remembered.
    from fuzzing import mutate

    path = tmp_path / "fails.tflite"
    path.write_bytes(mutate(SCOPED_INT8_TFLITE.read_bytes(), [(1, 65436, 223), (1, 692948, 210)]))
    with pytest.raises(ModelContractError, match="zero point .* outside int8") as caught:
        load_model(path, threads=1)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert len(probes) == 1 and not (tmp_path / "cache" / "checked-models.txt").exists()


def test_a_check_that_hangs_is_one_line(probes, monkeypatch):
    monkeypatch.setattr(_probe, "PROBE_TIMEOUT_S", 0.001)  # no child opens a model that fast: stands for a stall
    with pytest.raises(ModelContractError, match=r"took more than 0\.001 s to open it .*`xscreen export`"):
        load_model(INT8_TFLITE, threads=1)
