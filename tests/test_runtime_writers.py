"""open_writer: the output contract (CSV / JSONL), streaming, and resuming after a killed run."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import LABELS

from xscreen.runtime import ResumeError, ScreeningResult, open_writer

OK = ScreeningResult("scans/a.png", "ok", "covid", {"healthy": 0.1, "pneumonia": 0.2, "covid": 0.7}, True,
                     margin=0.4, review_reason="P(not healthy) 0.900 >= threshold 0.500")
HEALTHY = ScreeningResult("scans/b.png", "ok", "healthy", {"healthy": 0.9, "pneumonia": 0.05, "covid": 0.05}, False)
FAILED = ScreeningResult("scans/c.png", "error", error="corrupt or truncated image:\nimage file is truncated")


def csv_rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(), newline="")))


def write(out, results, resume=False):
    with open_writer(out, LABELS, resume=resume) as writer:
        done = set(writer.done)
        writer.write(results)
    return done


def test_csv_columns_and_rows(tmp_path):
    out = tmp_path / "results.csv"
    write(out, [OK, FAILED])
    rows = csv_rows(out)
    assert rows[0] == ["path", "status", "prediction", "prob_healthy", "prob_pneumonia", "prob_covid", "flag",
                       "margin", "review_reason", "scope_score", "error"]
    assert rows[1] == ["scans/a.png", "ok", "covid", "0.100000", "0.200000", "0.700000", "true", "0.400000",
                       "P(not healthy) 0.900 >= threshold 0.500", "", ""]
    # Errors stay on one line, so every row is one line of the file.
    reason = "corrupt or truncated image: image file is truncated"
    assert rows[2] == ["scans/c.png", "error", "", "", "", "", "", "", "", "", reason]
    assert len(out.read_text().splitlines()) == 3


def test_jsonl_rows(tmp_path):
    out = tmp_path / "results.jsonl"
    write(out, [OK, FAILED])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"path": "scans/a.png", "status": "ok", "prediction": "covid",
                       "probabilities": {"healthy": 0.1, "pneumonia": 0.2, "covid": 0.7}, "flag": True,
                       "margin": 0.4, "review_reason": "P(not healthy) 0.900 >= threshold 0.500", "scope_score": None,
                       "error": None}
    assert rows[1]["status"] == "error" and rows[1]["probabilities"] is None and "truncated" in rows[1]["error"]


def test_rows_reach_the_file_batch_by_batch(tmp_path):
    out = tmp_path / "results.csv"
    with open_writer(out, LABELS, resume=False) as writer:
        writer.write([OK])
        assert "scans/a.png" in out.read_text()  # flushed before the writer is closed


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_keeps_rows_and_lists_them_as_done(tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    write(out, [OK, FAILED])
    assert write(out, [HEALTHY], resume=True) == {"scans/a.png", "scans/c.png"}
    assert write(out, [], resume=True) == {"scans/a.png", "scans/b.png", "scans/c.png"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_truncates_a_torn_last_line(tmp_path, suffix):
    clean, torn = tmp_path / f"clean{suffix}", tmp_path / f"torn{suffix}"
    write(clean, [OK, HEALTHY, FAILED])
    write(torn, [OK, HEALTHY])
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) - 9])  # killed while writing the second row
    assert write(torn, [HEALTHY, FAILED], resume=True) == {"scans/a.png"}
    assert torn.read_bytes() == clean.read_bytes()


def test_resume_of_a_file_torn_inside_the_header_starts_over(tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("path,status,predi")
    assert write(out, [OK], resume=True) == set()
    assert out.read_text().startswith("path,status,prediction,prob_healthy")


def test_resume_refuses_a_file_written_for_other_labels(tmp_path):
    out = tmp_path / "results.csv"
    with open_writer(out, ["normal", "abnormal"], resume=False) as writer:
        writer.write([ScreeningResult("a.png", "ok", "normal", {"normal": 0.9, "abnormal": 0.1}, False)])
    with pytest.raises(ResumeError, match="not this model's"):
        open_writer(out, LABELS, resume=True)
    jsonl = tmp_path / "results.jsonl"
    with open_writer(jsonl, ["normal", "abnormal"], resume=False) as writer:
        writer.write([ScreeningResult("a.png", "ok", "normal", {"normal": 0.9, "abnormal": 0.1}, False)])
    with pytest.raises(ResumeError, match="labels"):
        open_writer(jsonl, LABELS, resume=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("where", ["last", "middle"])
def test_resume_refuses_a_file_with_a_line_it_did_not_write(tmp_path, suffix, where):
    out = tmp_path / f"results{suffix}"
    write(out, [OK])
    rows = out.read_text().splitlines(keepends=True)
    damaged = rows[:-1] + ["a stray line\n"] + rows[-1:] if where == "middle" else rows + ["{not a row\n"]
    out.write_text("".join(damaged))
    with pytest.raises(ResumeError, match=r"line \d is not"):
        open_writer(out, LABELS, resume=True)
    assert out.read_text() == "".join(damaged)  # nothing truncated when refusing


def test_resume_drops_a_row_torn_inside_a_quoted_file_name(tmp_path):
    out = tmp_path / "results.csv"
    write(out, [OK])
    with out.open("a") as fh:
        fh.write('"scans/new\nline')  # the kill came right after the newline inside the name
    assert write(out, [HEALTHY], resume=True) == {"scans/a.png"}
    assert [row[0] for row in csv_rows(out)] == ["path", "scans/a.png", "scans/b.png"]


def test_without_resume_the_file_is_replaced(tmp_path):
    out = tmp_path / "results.csv"
    write(out, [OK, HEALTHY])
    write(out, [FAILED])
    assert "scans/a.png" not in out.read_text() and "scans/c.png" in out.read_text()


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        open_writer(tmp_path / "results.xlsx", LABELS, resume=False)


def test_odd_file_names_round_trip(tmp_path):
    odd = ScreeningResult('scans/with, comma "quoted"\nnewline \udcff.png', "ok", "healthy",
                          {"healthy": 1.0, "pneumonia": 0.0, "covid": 0.0}, False)
    for suffix in (".csv", ".jsonl"):
        out = tmp_path / f"results{suffix}"
        write(out, [odd])
        assert write(out, [], resume=True) == {odd.path}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_out_of_scope_rows_carry_their_score_and_resume(tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    far = ScreeningResult("scans/photo.jpg", "out_of_scope", error="out of scope: far from the training films "
                          "(score 14.2 > 3.1)", scope_score=14.2345)
    write(out, [far])
    text = out.read_text()
    assert "14.235" in text and "far from the training films" in text and "covid" not in text.split("\n", 1)[1]
    assert write(out, [OK], resume=True) == {"scans/photo.jpg"}
