"""``--resume`` knows a file by where it is, not by how its path was spelled, and says when the output
holds rows of another input."""

from __future__ import annotations

from pathlib import Path

from conftest import INT8_TFLITE, grey, save_png
from test_cli_run import rows, xscreen


def _layout(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """``work/`` (where the user runs xscreen) beside ``shared/scans`` (the films)."""
    work, scans = tmp_path / "work", tmp_path / "shared" / "scans"
    work.mkdir()
    scans.mkdir(parents=True)
    films = [save_png(scans / f"film{i}.png", grey(20 + 40 * i)) for i in range(6)]
    return work, scans, films


def test_a_run_from_a_list_resumed_on_the_folder_screens_no_file_twice(tmp_path, monkeypatch):
    work, _scans, films = _layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    # A list's relative paths are resolved against the list's folder: the rows say work/../shared/scans/...
    (work / "half.txt").write_text("".join(f"../shared/scans/{p.name}\n" for p in films[:3]))
    out = work / "results.csv"
    assert xscreen("run", "work/half.txt", "-m", INT8_TFLITE, "--out", out, "-q").exit_code == 0
    first = [row["path"] for row in rows(out)]
    assert len(first) == 3 and all("work/../shared/" in p for p in first), first

    resumed = xscreen("run", "shared/scans", "-m", INT8_TFLITE, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    written = [row["path"] for row in rows(out)]
    assert len(written) == len(films), written  # 6 rows for 6 files, not 9
    assert written[:3] == first  # the rows already there keep the user's spelling
    assert sorted(Path(p).resolve() for p in written) == sorted(p.resolve() for p in films)
    assert "warning" not in resumed.stderr


def test_resuming_on_another_folder_warns_how_many_rows_are_not_in_this_input(tmp_path, monkeypatch):
    work, scans, films = _layout(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    save_png(other / "elsewhere.png", grey(200))
    out = work / "results.csv"
    assert xscreen("run", scans, "-m", INT8_TFLITE, "--out", out, "-q").exit_code == 0

    resumed = xscreen("run", other, "-m", INT8_TFLITE, "--out", out, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert len(rows(out)) == len(films) + 1
    warning = " ".join(resumed.stderr.split())  # said even with --quiet
    assert f"{len(films)} of the {len(films)} rows from earlier runs" in warning, resumed.stderr
    assert "not files of this input" in warning, resumed.stderr

    summary = xscreen("run", other, "-m", INT8_TFLITE, "--out", out, "--resume")
    assert f"of which not in this input │ {len(films)}" in " ".join(summary.stdout.split()), summary.stdout
