"""Heatmaps and reports as a user asks for them: xscreen run --heatmaps/--report, xscreen report, xscreen demo."""

from __future__ import annotations

import csv
import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import INT8_TFLITE, SCOPED_INT8_TFLITE, cli_runner, film, noise, save_png
from headless import dump_dom, needs_browser, parse_dom
from PIL import Image

from xscreen import cli
from xscreen.report import NO_HEATMAP_OUTPUT
from xscreen.report._overlay import PNG_MARK
from xscreen.runtime._run_record import record_path

HOSTILE = "<script>alert(1)</script>.png"  # on a POSIX disk: a folder "<script>alert(1)<" and its "script>.png"


def xscreen(*args, cwd: Path | None = None):
    return cli_runner(env={"COLUMNS": "200"}).invoke(cli.main, [str(a) for a in args])


@pytest.fixture
def scans(tmp_path) -> Path:
    """Films of every class for the scoped fixture model, a hostile name, a broken file, an out-of-scope one."""
    root = tmp_path / "scans"
    (root / "ward 3").mkdir(parents=True)
    for i, level in enumerate((20, 60, 100, 140, 180, 220)):
        save_png(root / "ward 3" / f"film{level}.png", film(level, (96, 80), seed=i))
    (root / HOSTILE).parent.mkdir()
    save_png(root / HOSTILE, film(200, (96, 80), seed=9))
    save_png(root / "noise.png", noise())
    (root / "broken.png").write_bytes(b"not an image")
    return root


def rows(out: Path) -> list[dict]:
    with open(out, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    for word in words:
        assert word in lines[0]


def test_run_heatmaps_writes_one_png_per_flagged_film(scans, tmp_path):
    out, heatmaps = tmp_path / "results.csv", tmp_path / "heatmaps"
    result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out, "--heatmaps", heatmaps)
    assert result.exit_code == 0, result.output
    flagged = [r["path"] for r in rows(out) if r["flag"] == "true"]
    assert len(flagged) >= 4
    written = sorted(p.name for p in heatmaps.iterdir())
    assert len(written) == len(flagged)
    assert "ward 3__film180.png.heatmap.png" in written
    assert not any(set('<>:"') & set(name) for name in written)  # the hostile name, made portable
    with Image.open(heatmaps / "ward 3__film180.png.heatmap.png") as im:
        assert im.text[PNG_MARK] == str(scans / "ward 3" / "film180.png")
        pixels = np.asarray(im.convert("RGB")).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 40).any()  # coloured, not a grey copy of the film


def test_heatmaps_all_covers_every_screened_film_and_a_rerun_replaces_only_its_own_files(scans, tmp_path):
    out, heatmaps = tmp_path / "results.csv", tmp_path / "heatmaps"
    heatmaps.mkdir()
    (heatmaps / "ward 3__film20.png.heatmap.png").write_text("the user's own notes")
    args = ("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out, "--heatmaps", heatmaps, "--heatmaps-all")
    assert xscreen(*args).exit_code == 0
    ok = [r for r in rows(out) if r["status"] == "ok"]
    first = sorted(p.name for p in heatmaps.iterdir())
    assert len(first) == len(ok) + 1 and "ward 3__film20.png-2.heatmap.png" in first
    assert xscreen(*args, "--overwrite").exit_code == 0
    assert sorted(p.name for p in heatmaps.iterdir()) == first  # replaced in place, no film20-3
    assert (heatmaps / "ward 3__film20.png.heatmap.png").read_text() == "the user's own notes"


def test_a_model_without_heatmaps_refuses_them_in_one_line_before_screening(scans, tmp_path):
    out = tmp_path / "results.csv"
    result = xscreen("run", scans, "--model", INT8_TFLITE, "--out", out, "--heatmaps", tmp_path / "h")
    one_line_error(result, NO_HEATMAP_OUTPUT)
    assert not out.exists()


def test_a_model_without_heatmaps_still_writes_the_report_and_says_why(scans, tmp_path):
    report = tmp_path / "report.html"
    result = xscreen("run", scans, "--model", INT8_TFLITE, "--out", tmp_path / "r.csv", "--report", report)
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert html.escape(NO_HEATMAP_OUTPUT) in page and "data:image/jpeg" not in page
    assert f"report: {report}" in result.stdout


@pytest.mark.parametrize("args, words", [
    (("--heatmaps-all",), ["--heatmaps-all needs --heatmaps"]),
    (("--heatmaps", "{scans}/heatmaps"), ["inside", "choose a folder outside"]),
    (("--report", "{tmp}/results.csv"), ["is the result file"]),
    (("--report", "{tmp}/report.txt"), [".html"]),
])
def test_contradictory_options_exit_2_in_one_line(scans, tmp_path, args, words):
    args = [a.format(scans=scans, tmp=tmp_path) for a in args]
    result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", tmp_path / "results.csv", *args)
    one_line_error(result, *words)


def test_run_report_inlines_the_flagged_films_and_links_their_pngs(scans, tmp_path):
    out, report, heatmaps = tmp_path / "results.csv", tmp_path / "out" / "report.html", tmp_path / "heatmaps"
    result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out, "--report", report,
                     "--heatmaps", heatmaps)
    assert result.exit_code == 0, result.output
    page = report.read_text()
    flagged = sum(r["flag"] == "true" for r in rows(out))
    assert page.count("data:image/jpeg;base64,") == flagged
    assert "<script>alert" not in page and "scoped_int8.tflite" in page
    assert '"../heatmaps/ward 3__film180.png.heatmap.png"' in page  # relative link next to the report


def test_report_of_an_earlier_run_recomputes_heatmaps_of_the_films_still_there(scans, tmp_path):
    out = tmp_path / "results.csv"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out).exit_code == 0
    flagged = [r["path"] for r in rows(out) if r["flag"] == "true"]
    Path(flagged[0]).unlink()
    result = xscreen("report", out, "--model", SCOPED_INT8_TFLITE)
    assert result.exit_code == 0, result.output
    page = out.with_suffix(".html").read_text()
    assert page.count("data:image/jpeg;base64,") == len(flagged) - 1
    assert "Flagged films that could not be read again: 1" in result.stdout


def test_report_without_a_matching_model_is_table_only_and_says_so(scans, tmp_path):
    out = tmp_path / "results.jsonl"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out).exit_code == 0
    record_path(out).unlink()  # results without their model record (an older xscreen, or copied alone)
    # No --model: the bundled model has other labels, so it did not write these results.
    result = xscreen("report", out, "--out", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    assert "it did not write these results" in page and "data:image/jpeg" not in page
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S)[1])
    assert len(data["rows"]) == 9 and data["thumbs"] == []


def test_report_without_model_option_uses_the_model_the_results_record(scans, tmp_path):
    out = tmp_path / "results.csv"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out).exit_code == 0
    result = xscreen("report", out)
    assert result.exit_code == 0, result.output
    assert "the model that wrote the result file" in result.stdout
    flagged = sum(r["flag"] == "true" for r in rows(out))
    assert out.with_suffix(".html").read_text().count("data:image/jpeg;base64,") == flagged


def test_report_of_a_file_that_is_not_a_result_file_exits_2(tmp_path):
    bogus = tmp_path / "notes.csv"
    bogus.write_text("a,b\n1,2\n")
    one_line_error(xscreen("report", bogus, "--model", SCOPED_INT8_TFLITE), "not a result file")


def test_demo_writes_the_report_and_prints_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = xscreen("demo")
    assert result.exit_code == 0, result.output
    report = Path(re.search(r"^report: (.+)$", result.stdout, re.M)[1])
    assert report.suffix == ".html" and report.is_file()
    assert "SYNTHETIC-broken.png" in report.read_text()
    # the report says its films are synthetic, where a reader of the report (not of the terminal) sees it
    notes = re.findall(r'<p class="note">(.*?)</p>', report.read_text(), re.S)
    assert notes and "SYNTHETIC test films" in notes[0] and "not X-rays of anyone" in notes[0]


def test_the_report_names_the_model_files_own_sha256(scans, tmp_path):
    import hashlib

    report = tmp_path / "report.html"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", tmp_path / "r.csv",
                   "--report", report).exit_code == 0
    page = report.read_text()
    assert f'<th scope="row">file sha256</th><td>{hashlib.sha256(SCOPED_INT8_TFLITE.read_bytes()).hexdigest()}' in page


@needs_browser
def test_the_runs_report_opens_in_a_browser_with_a_row_per_file(scans, tmp_path):
    report = tmp_path / "report.html"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", tmp_path / "r.csv",
                   "--report", report).exit_code == 0
    dom = parse_dom(dump_dom(report, tmp_path / "profile"))
    assert len(dom.rows) == 9 and dom.scripts == 2
    assert any(cells[1] == str(scans / HOSTILE) for _, cells in dom.rows)
    out_of_scope = parse_dom(dump_dom(report, tmp_path / "profile", "status=out_of_scope"))
    assert [cells[1] for _, cells in out_of_scope.rows] == [str(scans / "noise.png")]


def test_run_never_replaces_an_html_file_it_did_not_write(scans, tmp_path):
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my own notes</p>")
    result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", tmp_path / "r.csv", "--report", notes)
    one_line_error(result, "not an xscreen report")
    assert notes.read_text() == "<p>my own notes</p>" and not (tmp_path / "r.csv").exists()


def test_report_in_an_install_without_the_bundled_model_is_table_only(scans, tmp_path, monkeypatch):
    from xscreen.runtime import _model as model_module

    out = tmp_path / "results.csv"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out).exit_code == 0
    record_path(out).unlink()
    monkeypatch.setattr(model_module, "BUNDLED_MODEL", tmp_path / "absent.tflite")
    result = xscreen("report", out)
    assert result.exit_code == 0, result.output
    assert "No model given" in result.stdout and out.with_suffix(".html").is_file()


@pytest.mark.parametrize("option", ["--report", "--heatmaps"])
def test_unwritable_report_and_heatmap_destinations_fail_before_screening(scans, tmp_path, option):
    (tmp_path / "a-file").write_text("in the way")
    target = tmp_path / "a-file" / ("report.html" if option == "--report" else "heatmaps")
    out = tmp_path / "results.csv"
    result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out, option, target)
    one_line_error(result, option, "is a file, not a folder")
    assert not out.exists()  # refused before the first film, not after the last


def test_xscreen_report_refuses_an_unwritable_destination_in_one_line(scans, tmp_path):
    out = tmp_path / "results.csv"
    assert xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out).exit_code == 0
    (tmp_path / "a-file").write_text("in the way")
    one_line_error(xscreen("report", out, "--out", tmp_path / "a-file" / "r.html"), "--out", "is a file, not a folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_report_folder_fails_before_screening(scans, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = tmp_path / "results.csv"
    try:
        result = xscreen("run", scans, "--model", SCOPED_INT8_TFLITE, "--out", out, "--report", locked / "r.html")
    finally:
        locked.chmod(0o755)
    one_line_error(result, "--report", "cannot write in")
    assert not out.exists()


def test_a_run_where_every_file_is_out_of_scope_still_writes_its_report(tmp_path):
    """No film screened, so no speed: the report says so instead of the run ending in a TypeError."""
    folder = tmp_path / "scans"
    folder.mkdir()
    save_png(folder / "noise.png", noise())
    report = tmp_path / "r.html"
    result = xscreen("run", folder, "--model", SCOPED_INT8_TFLITE, "--out", tmp_path / "r.csv", "--report", report)
    assert result.exit_code == 0, result.output
    assert "– images/s" in html.unescape(report.read_text())
