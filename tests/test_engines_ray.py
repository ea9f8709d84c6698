"""``xscreen run --engine ray`` on a real local Ray instance (2 CPUs): the same rows as the local engine.

Ray takes seconds to start on 2 cores, and each run seconds more to start its actors: one Ray
instance serves the whole session and each test runs as few screenings as it can. Marked ``ray``;
skipped where Ray is not installed (``pip install 'xscreen[ray]'``).
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INT8_TFLITE, SCOPED_INT8_TFLITE, cli_runner, film, noise, save_png
from test_cli_run import assert_one_line_error, rows

from xscreen import cli
from xscreen.runtime import load_model, result_columns, screen_files

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray not installed (pip install 'xscreen[ray]')")


def xscreen(*args):
    return cli_runner(env={"COLUMNS": "200"}).invoke(cli.main, [str(a) for a in args])


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def good_and_bad(brightness_folder, bad_files, tmp_path) -> Path:
    """A .txt list of the 12 good fixture images and the files that cannot be screened."""
    listing = tmp_path / "inputs.txt"
    listing.write_text("".join(f"{p}\n" for p in [*brightness_folder, *bad_files]))
    return listing


def by_path(table: list[dict]) -> dict[str, dict]:
    keyed = {row["path"]: row for row in table}
    assert len(keyed) == len(table), "a file has more than one row"
    return keyed


@pytest.mark.ray
@needs_ray
def test_ray_writes_the_same_csv_rows_as_the_local_engine(ray_instance, good_and_bad, bad_files, tmp_path):
    # The scoped model gives every kind of row: films in scope (ok), noise and flat greys out of scope, errors.
    extra = [save_png(tmp_path / f"film{level}.png", film(level, seed=level)) for level in (40, 120)]
    extra.append(save_png(tmp_path / "noise.png", noise()))
    listing = tmp_path / "all.txt"
    listing.write_text(good_and_bad.read_text() + "".join(f"{p}\n" for p in extra))
    local = xscreen("run", listing, "-m", SCOPED_INT8_TFLITE, "--out", tmp_path / "local.csv")
    on_ray = xscreen("run", listing, "-m", SCOPED_INT8_TFLITE, "--out", tmp_path / "ray.csv",
                     "--engine", "ray", "--workers", 2)
    assert local.exit_code == 0, local.output
    assert on_ray.exit_code == 0, on_ray.output
    assert "Traceback" not in on_ray.output
    ray_rows = by_path(rows(tmp_path / "ray.csv"))
    assert ray_rows == by_path(rows(tmp_path / "local.csv"))
    assert {row["status"] for row in ray_rows.values()} == {"ok", "out_of_scope", "error"}
    for path, reason in bad_files.items():  # every bad file is a row with its reason, not a failed run
        assert ray_rows[path]["status"] == "error" and reason in ray_rows[path]["error"]
    summary = " ".join(on_ray.stdout.split())
    assert f"errors │ {len(bad_files)}" in summary and "Ray: 2 actors x 1 CPU" in summary, summary


@pytest.mark.ray
@needs_ray
def test_ray_parquet_holds_the_local_results_and_resumes_without_duplicates(ray_instance, good_and_bad,
                                                                           tmp_path):
    import pyarrow.parquet as pq

    paths = good_and_bad.read_text().split()
    first_half = tmp_path / "first_half.txt"
    first_half.write_text("".join(f"{p}\n" for p in paths[: len(paths) // 2]))
    out = tmp_path / "results.parquet"
    first = xscreen("run", first_half, "-m", INT8_TFLITE, "--out", out, "--engine", "ray", "-q")
    assert first.exit_code == 0, first.output
    again = xscreen("run", good_and_bad, "-m", INT8_TFLITE, "--out", out, "--engine", "ray")
    assert_one_line_error(again, 2, "--resume", "--overwrite")
    resumed = xscreen("run", good_and_bad, "-m", INT8_TFLITE, "--out", out, "--engine", "ray", "--resume")
    assert resumed.exit_code == 0, resumed.output
    summary = " ".join(resumed.stdout.split())
    assert f"{len(paths) - len(paths) // 2} images screened" in summary, summary
    assert f"already in the output (resumed) │ {len(paths) // 2}" in summary, summary

    table = pq.read_table(out)
    model = load_model(INT8_TFLITE)
    assert table.column_names == result_columns(model.labels)
    got = by_path(table.to_pylist())
    expected = {r.path: r for r in screen_files(paths, model)}
    assert set(got) == set(expected)
    for path, want in expected.items():
        row = got[path]
        assert (row["status"], row["prediction"], row["flag"], row["error"]) == \
               (want.status, want.prediction, want.flag, want.error), path
        probabilities = None if want.probabilities is None else [want.probabilities[label] for label in model.labels]
        assert [row[f"prob_{label}"] for label in model.labels] == (probabilities or [None] * len(model.labels))


@pytest.mark.ray
@needs_ray
def test_ray_resumes_a_jsonl_file_the_local_engine_started(ray_instance, good_and_bad, tmp_path):
    paths = good_and_bad.read_text().split()
    some = tmp_path / "some.txt"
    some.write_text("".join(f"{p}\n" for p in paths[:5]))
    out = tmp_path / "results.jsonl"
    assert xscreen("run", some, "-m", INT8_TFLITE, "--out", out, "-q").exit_code == 0
    started = out.read_text().splitlines()
    resumed = xscreen("run", good_and_bad, "-m", INT8_TFLITE, "--out", out, "--engine", "ray", "--resume",
                      "--workers", 1, "-q")
    assert resumed.exit_code == 0, resumed.output
    lines = out.read_text().splitlines()
    assert lines[:5] == started  # the rows already there are kept as they were
    assert sorted(by_path(rows(out))) == sorted(paths)


def test_engine_ray_without_ray_names_the_pip_command(brightness_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = xscreen("run", Path(next(iter(brightness_folder))).parent, "-m", INT8_TFLITE,
                     "--out", tmp_path / "r.csv", "--engine", "ray")
    assert_one_line_error(result, 2, "pip install 'xscreen[ray]'")
    assert not (tmp_path / "r.csv").exists()


def test_ray_options_without_the_ray_engine_are_usage_errors(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    assert_one_line_error(xscreen("run", folder, "--out", tmp_path / "r.csv", "--address", "auto"),
                          2, "--engine ray")
    assert_one_line_error(xscreen("run", folder, "--out", tmp_path / "r.parquet"), 2, ".csv or .jsonl")
    (tmp_path / "folder.csv").mkdir()
    assert_one_line_error(xscreen("run", folder, "--out", tmp_path / "folder.csv"), 2, "a .parquet output is a folder")


def test_the_local_engine_never_imports_ray(brightness_folder, tmp_path):
    folder = str(Path(next(iter(brightness_folder))).parent)
    code = f"""
import sys
from xscreen.cli import main
main(["run", {folder!r}, "-m", {str(INT8_TFLITE)!r}, "--out", {str(tmp_path / 'r.csv')!r}, "-q"],
     standalone_mode=False)
print("RAY", sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "pyarrow", "pandas")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RAY []" in done.stdout, done.stdout


@pytest.mark.ray
@needs_ray
def test_resuming_a_parquet_folder_with_a_torn_file_names_it(ray_instance, good_and_bad, tmp_path):
    out = tmp_path / "results.parquet"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"PAR1 torn by a killed run")
    result = xscreen("run", good_and_bad, "-m", INT8_TFLITE, "--out", out, "--engine", "ray", "--resume")
    assert_one_line_error(result, 2, "part-0.parquet", "delete that file and resume")
