"""Int8 ops outside XNNPACK's range: read from the file, and opened without XNNPACK with one clear line.

The CLI runs in a child process: an abort inside the TFLite runtime then fails the test instead of
killing pytest.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from conftest import MODELS, grey, save_png

from xscreen.runtime import default_model_path
from xscreen.runtime._tflite_metadata import TFLiteFormatError
from xscreen.runtime._tflite_ops import (
    XNNPACK_MAX_REQUANTIZATION_SCALE,
    outside_xnnpack_range,
    requantization_scales,
)

REFUSED = MODELS / "xnnpack_refused_int8.tflite"  # its scope FULLY_CONNECTED: requantization scale ~514


def xscreen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xscreen", *args], capture_output=True, text=True, timeout=120)


def test_requantization_scales_are_read_from_the_flatbuffer():
    bundled = requantization_scales(default_model_path().read_bytes())
    assert len(bundled) > 50 and {r.op for r in bundled} == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert max(r.scale for r in bundled) < 1 and outside_xnnpack_range(default_model_path().read_bytes()) == []
    refused = outside_xnnpack_range(REFUSED.read_bytes())
    assert [r.op for r in refused] == ["FULLY_CONNECTED"]
    assert 400 < refused[0].scale < 700 and refused[0].scale >= XNNPACK_MAX_REQUANTIZATION_SCALE
    with pytest.raises(TFLiteFormatError):
        requantization_scales(b"not a model at all")


def test_info_opens_an_out_of_range_file_without_xnnpack_and_says_so():
    done = xscreen("info", str(REFUSED))
    assert done.returncode == 0, done.stderr
    assert "without XNNPACK" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "requantization scale 514" in warnings[0] and "below 256" in warnings[0]


def test_run_screens_with_an_out_of_range_file(tmp_path):
    folder = tmp_path / "films"
    folder.mkdir()
    for level in (40, 128, 220):
        save_png(folder / f"grey{level}.png", grey(level, (32, 32)))
    out = tmp_path / "results.csv"
    done = xscreen("run", str(folder), "--model", str(REFUSED), "--out", str(out), "--no-scope-check")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("without XNNPACK") == 1, done.stderr
    with open(out, newline="") as fh:
        rows = {row["path"].rsplit("/", 1)[-1]: row for row in csv.DictReader(fh)}
    # TFLite's own int8 kernels compute the file as it is: the brightness rule holds
    assert {name: row["prediction"] for name, row in rows.items()} == {
        "grey40.png": "healthy", "grey128.png": "pneumonia", "grey220.png": "covid"}


def test_load_check_opens_each_file_in_a_child_process(tmp_path, monkeypatch):
    from xscreen.export import _load_check

    assert _load_check.load_check(REFUSED) is None  # opens (without XNNPACK) and screens a film
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(REFUSED.read_bytes()[:300])
    failure = _load_check.load_check(truncated)
    assert failure.startswith("the runtime cannot open it: ModelContractError: ") and "\n" not in failure
    # A runtime that aborts in native code: one line naming the signal, and this process lives on.
    monkeypatch.setattr(_load_check, "_CHILD", "import os, sys; print('double free or corruption', "
                                               "file=sys.stderr); sys.stderr.flush(); os.abort()")
    assert _load_check.load_check(REFUSED) == ("the runtime crashed opening it (SIGABRT: double free or "
                                               "corruption)")
