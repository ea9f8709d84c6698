"""The files around the films: skipped ones named, broken symlinks called so, file names that are not UTF-8."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import INT8_TFLITE, LABELS, cli_runner, film, save_png

from xscreen import cli
from xscreen.runtime import ScreeningResult, discover_inputs, open_writer, run_screening
from xscreen.runtime._discover import BROKEN_SYMLINK, NOT_AN_IMAGE, SYMLINK_OUT

needs_bytes_names = pytest.mark.skipif(sys.platform in ("darwin", "win32"),
                                       reason="the file system only takes UTF-8 names")


def test_a_broken_symlink_is_called_broken_not_out_of_the_folder(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    save_png(root / "film.png", film(100))
    os.symlink(tmp_path / "gone.png", root / "outside_gone.png")
    os.symlink(root / "gone_too.png", root / "inside_gone.png")
    ignored = []
    paths = list(discover_inputs(root, on_ignored=lambda path, reason: ignored.append((path.name, reason))))
    assert [p.name for p in paths] == ["film.png"]
    assert sorted(ignored) == [("inside_gone.png", BROKEN_SYMLINK), ("outside_gone.png", BROKEN_SYMLINK)]
    assert SYMLINK_OUT not in {reason for _, reason in ignored}


def test_a_listed_broken_symlink_is_its_rows_reason(tmp_path):
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    listing = tmp_path / "list.txt"
    listing.write_text("link.png\n")
    summary = run_screening(listing, INT8_TFLITE, tmp_path / "out.csv")
    assert summary.first_errors == [(str(tmp_path / "link.png"),
                                     f"broken symlink: its target {tmp_path / 'gone.png'} does not exist")]


def test_skipped_files_are_named_in_the_summary(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    save_png(root / "film.png", film(100))
    for name in ("notes.txt", "scan.gif", "table.xlsx"):
        (root / name).write_text("not a film")
    (root / ".DS_Store").write_text("hidden")
    os.symlink(tmp_path / "gone.png", root / "zz_link.png")
    out = tmp_path / "out.csv"
    summary = run_screening(root, INT8_TFLITE, out)
    skipped = [(n, NOT_AN_IMAGE) for n in ("notes.txt", "scan.gif", "table.xlsx")] + [("zz_link.png", BROKEN_SYMLINK)]
    assert summary.first_ignored == [(str(root / name), reason) for name, reason in skipped]
    result = cli_runner(env={"COLUMNS": "200"}).invoke(
        cli.main, ["run", str(root), "--model", str(INT8_TFLITE), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    for name in ("notes.txt", "scan.gif", "table.xlsx", "zz_link.png"):
        assert f"ignored {root / name}" in result.output, result.output
    assert ".DS_Store" not in result.output  # hidden files are counted, not listed


@needs_bytes_names
def test_jsonl_with_a_non_utf8_file_name_is_valid_json_and_resumes(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: not UTF-8
    save_png(root / name, film(100))
    save_png(root / "plain.png", film(120))
    out = tmp_path / "out.jsonl"
    run_screening(root, INT8_TFLITE, out)
    data = out.read_bytes()
    data.decode("utf-8")  # strict: the whole file is UTF-8
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    for row in rows:
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # no lone surrogates anywhere (strict parsers reject them)
    odd = next(row for row in rows if "path_bytes" in row)
    assert odd["path"] == str(root / "caf\ufffd-\ufffd.png") and odd["status"] == "ok"
    assert bytes.fromhex(odd["path_bytes"]) == os.fsencode(root / name)
    assert "path_bytes" not in next(row for row in rows if row["path"].endswith("plain.png"))
    summary = run_screening(root, INT8_TFLITE, out, resume=True)
    assert summary.skipped_resumed == 2 and summary.new_ok == 0 and summary.rows == 2


def test_jsonl_error_reasons_naming_an_odd_file_are_valid_too(tmp_path):
    out = tmp_path / "out.jsonl"
    odd = os.fsdecode(b"/scans/\xff.png")
    with open_writer(out, LABELS, resume=False) as writer:
        writer.write([ScreeningResult(odd, "error", error=f"broken symlink: its target {odd} does not exist")])
    row = json.loads(out.read_bytes().decode("utf-8"))
    assert row["error"] == "broken symlink: its target /scans/\ufffd.png does not exist"
    with open_writer(out, LABELS, resume=True) as writer:
        assert writer.done == {odd}
