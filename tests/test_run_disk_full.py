"""A disk that fills up during a run: one line that says the rows so far are kept and how to go on (issue 19.12)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import INT8_TFLITE
from test_cli_run import assert_one_line_error, rows, xscreen

from xscreen.runtime import _writers


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_full_disk_keeps_the_rows_and_resume_finishes_the_run(brightness_folder, tmp_path, monkeypatch, suffix):
    out = tmp_path / f"results{suffix}"
    write = _writers._ResultWriter.write
    batches = []

    def fill_up_on_the_third_batch(self, results):
        batches.append(results)
        if len(batches) == 3:  # half a row reaches the disk, then it is full
            self._fh.write("/half/a/ro")
            self._fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        write(self, results)

    monkeypatch.setattr(_writers._ResultWriter, "write", fill_up_on_the_third_batch)
    folder = min((Path(p).parent for p in brightness_folder), key=lambda p: len(p.parts))
    args = ("run", folder, "-m", INT8_TFLITE, "--out", out, "--batch-size", "2", "--workers", "0", "-q")
    assert_one_line_error(xscreen(*args), 2, f"{out}: No space left on device; the rows written so far are kept:",
                          "--resume")
    monkeypatch.setattr(_writers._ResultWriter, "write", write)
    result = xscreen(*args, "--resume")
    assert result.exit_code == 0, result.output
    written = [row["path"] for row in rows(out)]
    assert sorted(written) == sorted(brightness_folder)  # every film once: the torn row dropped, none twice
