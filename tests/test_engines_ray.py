"""``xscreen run --engine ray`` on a real local Ray instance (2 CPUs): the same rows as the local engine.

Ray takes seconds to start on 2 cores, and each run seconds more to start its actors: one Ray
instance serves the whole session and each test runs as few screenings as it can. Marked ``ray``;
skipped where Ray is not installed (``pip install 'xscreen[ray]'``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (
    FP32_TFLITE,
    INT8_TFLITE,
    LEVELS,
    SCOPED_INT8_TFLITE,
    cli_runner,
    film,
    noise,
    save_png,
    two_tone,
)
from test_cli_run import assert_one_line_error, rows

from xscreen import cli
from xscreen.runtime import load_model, result_columns, screen_files
from xscreen.runtime._run_record import locked_output, read_record

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray not installed (pip install 'xscreen[ray]')")


def xscreen(*args):
    return cli_runner(env={"COLUMNS": "200"}).invoke(cli.main, [str(a) for a in args])


@pytest.fixture(scope="session")
def ray_instance():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
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
    # the summary counts every row in the output, as a CSV resume does; the progress line, this run's files
    assert f"xscreen run: {len(paths)} files:" in summary, summary
    assert f"rows from earlier runs (--resume) │ {len(paths) // 2}" in summary, summary
    new = len(paths) - len(paths) // 2
    assert f"screened {new}/{new} (100%)" in resumed.stderr, resumed.stderr

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


@pytest.mark.ray
@needs_ray
def test_relative_paths_from_another_folder_give_every_row_in_the_asked_parquet(ray_instance, tmp_path, monkeypatch,
                                                                                request):
    import pyarrow.parquet as pq

    # The Ray instance was started in pytest's folder; this run's relative paths mean this test's folder.
    (tmp_path / "scans").mkdir()
    expected = {f"scans/grey{level:03d}.png": label for level, label in LEVELS.items()}
    for path in expected:
        save_png(tmp_path / path, two_tone(int(path[-7:-4])))
    monkeypatch.chdir(tmp_path)
    result = xscreen("run", "scans", "-m", INT8_TFLITE, "--out", "rel.parquet", "--engine", "ray", "-q")
    assert result.exit_code == 0, result.output
    assert not (request.config.invocation_params.dir / "rel.parquet").exists(), "written in the cluster's folder"
    table = pq.read_table(tmp_path / "rel.parquet")
    assert table.column_names == result_columns(load_model(INT8_TFLITE).labels)
    got = {row["path"]: row for row in table.to_pylist()}
    assert {path: row["prediction"] for path, row in got.items()} == expected  # the user's spelling, every file
    assert {row["status"] for row in got.values()} == {"ok"}

    # The Parquet folder has a lock and a model record, and a resume with another model is refused, as for CSV.
    record = read_record(tmp_path / "rel.parquet")
    assert record is not None and record["model_sha256"] == load_model(INT8_TFLITE).sha256
    other = xscreen("run", "scans", "-m", FP32_TFLITE, "--out", "rel.parquet", "--engine", "ray", "--resume")
    assert_one_line_error(other, 2, "cannot resume", "brightness_int8.tflite", "brightness_fp32.tflite")
    with locked_output(tmp_path / "rel.parquet", folder=True):
        busy = xscreen("run", "scans", "-m", INT8_TFLITE, "--out", "rel.parquet", "--engine", "ray", "--resume")
    assert_one_line_error(busy, 2, "being written by another xscreen run")
    assert pq.read_table(tmp_path / "rel.parquet").num_rows == len(expected)


def _xscreen_process(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    """``python -m xscreen ARGS`` in a child process, its own Ray (none inherited from this one)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), clean.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "xscreen", *map(str, args)], env={**clean, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(process: subprocess.Popen, within_s: float) -> tuple[int, str]:
    try:
        _out, err = process.communicate(timeout=within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
        pytest.fail(f"still running after {within_s} s: {err[-2000:]}")
    return process.returncode, err


@needs_ray
def test_an_address_where_nothing_listens_fails_at_once_naming_it(brightness_folder, tmp_path):
    folder = Path(next(iter(brightness_folder))).parent
    started = time.perf_counter()
    code, err = _finish(_xscreen_process("run", folder, "-m", INT8_TFLITE, "--out", tmp_path / "r.csv",
                                         "--engine", "ray", "--address", "127.0.0.1:1"), within_s=90)
    assert code == 2, err
    assert "joining the cluster at 127.0.0.1:1" in err, err
    error = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "127.0.0.1:1" in error[0] and "nothing answers there" in error[0], err
    assert time.perf_counter() - started < 60


@pytest.mark.ray
@needs_ray
def test_a_cluster_that_refuses_our_token_gives_up_after_the_timeout_naming_what_to_set(ray_instance,
                                                                                      brightness_folder, tmp_path):
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        pytest.skip("this session's Ray runs without token authentication")
    address = ray_instance.get_runtime_context().gcs_address
    folder = Path(next(iter(brightness_folder))).parent
    code, err = _finish(_xscreen_process("run", folder, "-m", INT8_TFLITE, "--out", tmp_path / "r.csv",
                                         "--engine", "ray", "--address", address, "--connect-timeout", 4),
                        within_s=90)
    assert code == 2, err
    error = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and address in error[0] and "no answer within 4 s" in error[0], err
    assert "RAY_AUTH_MODE=token" in error[0] and "RAY_AUTH_TOKEN" in error[0], error


@pytest.mark.ray
@needs_ray
def test_a_local_ray_ignores_a_stale_cluster_record_is_quiet_and_ends_cleanly_on_sigterm(tmp_path):
    # Ray's state in a folder of this test's own (short: Ray's socket paths must stay under 108 bytes), holding
    # the record of a cluster long gone, as `ray start` leaves it.
    ray_tmp = tempfile.mkdtemp(prefix="xr", dir="/tmp")
    try:
        (Path(ray_tmp) / "ray").mkdir()
        (Path(ray_tmp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
        scans = tmp_path / "scans"
        scans.mkdir()
        for i in range(1500):  # enough that the run is still going when the first rows are in
            save_png(scans / f"film{i:04d}.png", two_tone(i % 250, (32, 32)))
        out = tmp_path / "r.csv"
        process = _xscreen_process("run", scans, "-m", INT8_TFLITE, "--out", out, "--engine", "ray",
                                   env={"RAY_TMPDIR": ray_tmp})
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline and len(_lines(out)) < 2:
            time.sleep(0.1)
        assert process.poll() is None, f"the run ended before SIGTERM: {process.communicate()[1][-3000:]}"
        process.send_signal(signal.SIGTERM)
        code, err = _finish(process, within_s=60)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "Ray: starting a local instance for this run" in err, err
    assert code == 130, err
    assert "--resume" in err.splitlines()[-1] or "--resume" in err.splitlines()[-2], err
    for noise_line in ("core_worker.cc", "Token authentication", "SIGTERM received", "Traceback", "deprecated"):
        assert noise_line not in err, err
    kept = rows(out)
    assert 0 < len(kept) < 1500 and len({row["path"] for row in kept}) == len(kept)
    assert {row["status"] for row in kept} == {"ok"}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_ray_run_missing_rows_or_reading_no_file_is_never_a_silent_success(tmp_path):
    from xscreen.engines._ray import RayEngineError, _check_all_rows
    from xscreen.runtime import RunSummary, ScreeningResult

    lost = RunSummary(total=14, out="rel.parquet", model="m", backend="b")
    with pytest.raises(RayEngineError, match="returned 0 rows for the 14 files sent"):
        _check_all_rows(lost, 14, tmp_path / "rel.parquet")

    unread = RunSummary(total=3, out="r.csv", model="m", backend="b")
    unread.add([ScreeningResult(f"scans/{i}.png", "error", error="cannot read file: No such file or directory")
                for i in range(3)])
    _check_all_rows(unread, 3, tmp_path / "r.csv")
    assert len(unread.warnings) == 1 and "same absolute path" in unread.warnings[0], unread.warnings


def test_help_names_every_column_and_where_report_takes_its_model():
    run_help = " ".join(xscreen("run", "--help").output.split())
    assert "margin" in run_help
    report_help = " ".join(xscreen("report", "--help").output.split())
    assert "the one that wrote RESULTS" in report_help and "[default: bundled]" not in report_help
