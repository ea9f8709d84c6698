"""What keeps a result file right: labels that cannot mislabel, one writer at a time, the model on record,
a summary that counts what is in the file (issue 10, points 1, 2, 3, 8 and 11)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FP32_TFLITE, INT8_TFLITE, save_png, two_tone
from test_cli_run import assert_one_line_error, rows, xscreen

from xscreen.runtime import load_model, read_record, record_path


@pytest.fixture()
def folder(brightness_folder) -> Path:
    return Path(next(iter(brightness_folder))).parent


# 1. --labels cannot mislabel a labelled model; --rename renames and keeps the flag.
@pytest.mark.parametrize("labels", ["healthy,covid,pneumonia", "covid,normal,pneumonia"])
def test_labels_that_would_mislabel_a_labelled_model_are_refused(folder, tmp_path, labels):
    out = tmp_path / "r.csv"
    result = xscreen("run", folder, "-m", INT8_TFLITE, "--labels", labels, "--out", out)
    assert_one_line_error(result, 2, "healthy,pneumonia,covid", "--rename")
    assert not out.exists() or out.stat().st_size == 0


def test_rename_renames_the_output_and_keeps_the_flag(folder, tmp_path, brightness_folder):
    out = tmp_path / "r.csv"
    result = xscreen("run", folder, "-m", INT8_TFLITE, "--rename", "healthy=normal,covid=covid19", "--out", out)
    assert result.exit_code == 0, result.output
    got = {r["path"]: r for r in rows(out)}
    assert list(next(iter(got.values()))) == ["path", "status", "prediction", "prob_normal", "prob_pneumonia",
                                              "prob_covid19", "flag", "margin", "review_reason", "scope_score", "error"]
    renamed = {"healthy": "normal", "covid": "covid19", "pneumonia": "pneumonia"}
    assert {p: r["prediction"] for p, r in got.items()} == {p: renamed[v] for p, v in brightness_folder.items()}
    assert {r["flag"] for r in got.values() if r["prediction"] == "normal"} == {"false"}
    assert {r["flag"] for r in got.values() if r["prediction"] != "normal"} == {"true"}
    assert all(r["review_reason"].startswith("P(not normal) ") for r in got.values())
    bad = xscreen("run", folder, "-m", INT8_TFLITE, "--rename", "healthy", "--out", out)
    assert bad.exit_code == 2 and "expected old=new" in bad.stderr  # click's usage error


# 2. One writer at a time.
def test_a_second_run_on_a_locked_output_exits_2_naming_the_holder(folder, tmp_path):
    out = tmp_path / "r.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from xscreen.runtime import load_model\n"
         "from xscreen.runtime._run_record import locked_output, write_record\n"
         "model = load_model(sys.argv[1])\n"
         "with locked_output(sys.argv[2]):\n"
         "    write_record(sys.argv[2], model, resumed=False)\n"
         "    print('locked', flush=True)\n"
         "    time.sleep(60)\n", str(INT8_TFLITE), str(out)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"], ["--overwrite"]):
            result = xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, *extra)
            assert_one_line_error(result, 2, "being written by another xscreen run", f"pid {holder.pid}",
                                  socket.gethostname())
        assert out.read_text() == ""  # nothing written, nothing truncated
    finally:
        holder.kill()
        holder.wait()
    assert xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "--resume", "-q").exit_code == 0
    assert len(rows(out)) == 12  # the lock died with its holder


# 3. The model that wrote a file is on record, and a resume with another one is refused.
def test_the_sidecar_records_the_model_and_a_resume_with_another_model_is_refused(folder, tmp_path):
    out = tmp_path / "r.csv"
    assert xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "-q").exit_code == 0
    record = json.loads(record_path(out).read_text())
    model = load_model(INT8_TFLITE)
    assert record["model_sha256"] == model.sha256 and len(record["model_sha256"]) == 64
    assert record["threshold"] == model.metadata.threshold and record["labels"] == list(model.labels)
    assert record["preprocessing"] == model.metadata.preprocessing and record["resumed_at"] == []
    before = out.read_bytes()

    result = xscreen("run", folder, "-m", FP32_TFLITE, "--out", out, "--resume")
    assert_one_line_error(result, 2, "cannot resume", str(INT8_TFLITE), str(FP32_TFLITE), model.sha256,
                          load_model(FP32_TFLITE).sha256)
    assert out.read_bytes() == before

    assert xscreen("run", folder, "-m", INT8_TFLITE, "--out", out, "--resume", "-q").exit_code == 0
    resumed = read_record(out)
    assert len(resumed["resumed_at"]) == 1 and resumed["started_at"] == record["started_at"]


# 8. The summary counts what is in the file and says what the flag is.
def test_a_run_whose_only_file_failed_screened_nothing_and_shows_no_speed(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnothing else")
    result = xscreen("run", bad, "-m", INT8_TFLITE, "--out", tmp_path / "r.csv")
    summary = " ".join(result.stdout.split())
    assert "1 file: 0 screened, 1 error" in summary, summary
    assert "images/s" not in summary and "this run screened no image" in summary


def test_the_summary_explains_the_flag(folder, tmp_path):
    summary = " ".join(xscreen("run", folder, "-m", INT8_TFLITE, "--out", tmp_path / "r.csv").stdout.split())
    assert "12 files: 12 screened, 0 errors" in summary
    assert "flag = needs review: P(not healthy) >=" in summary and "not the prediction" in summary
    assert "review_reason" in summary


# 11. Lists: CSV with a path column, duplicates screened once, standard input.
def test_a_csv_list_with_a_path_column_is_a_list_and_duplicates_are_screened_once(folder, tmp_path):
    images = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    listing = tmp_path / "todo.csv"
    listing.write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(images + images[:1])))
    out = tmp_path / "r.csv"
    result = xscreen("run", listing, "-m", INT8_TFLITE, "--out", out)
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in rows(out)] == [str(p) for p in images]
    assert "duplicates skipped (listed twice) │ 1" in " ".join(result.stdout.split())

    no_path = tmp_path / "bad.csv"
    no_path.write_text("file\nx.png\n")
    assert_one_line_error(xscreen("run", no_path, "-m", INT8_TFLITE, "--out", tmp_path / "r2.csv"), 2,
                          "'path' column")


def test_a_list_on_standard_input(folder, tmp_path):
    images = sorted(str(p) for p in folder.iterdir() if p.suffix == ".png")
    out = tmp_path / "r.csv"
    result = subprocess.run(
        [sys.executable, "-c", "from xscreen.cli import main; main()", "run", "-", "-m", str(INT8_TFLITE),
         "--out", str(out), "-q"],
        input="\n".join(images + images) + "\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in rows(out)] == images


def test_only_out_of_tree_symlinks_mention_follow_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    save_png(outside / "film.png", two_tone(100))
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "film.png").symlink_to(outside / "film.png")
    result = xscreen("run", tmp_path / "scans", "-m", INT8_TFLITE, "--out", tmp_path / "r.csv")
    assert_one_line_error(result, 2, "1 symlinks leading out of it were not followed", "--follow-symlinks")


def test_a_self_referencing_symlink_is_one_error_row_and_the_rest_is_screened(tmp_path):
    (tmp_path / "scans").mkdir()
    save_png(tmp_path / "scans" / "film.png", two_tone(100))
    (tmp_path / "scans" / "me.jpeg").symlink_to("me.jpeg")
    out = tmp_path / "r.csv"
    result = xscreen("run", tmp_path / "scans", "-m", INT8_TFLITE, "--out", out)
    assert result.exit_code == 0, result.output
    got = {Path(r["path"]).name: r for r in rows(out)}
    assert got["film.png"]["status"] == "ok"
    assert got["me.jpeg"]["status"] == "error" and "symlink loop" in got["me.jpeg"]["error"]
    assert_one_line_error(xscreen("run", tmp_path / "scans" / "me.jpeg", "-m", INT8_TFLITE, "--out", out,
                                  "--overwrite"), 2, "is a symlink loop")
