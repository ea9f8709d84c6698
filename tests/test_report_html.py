"""The HTML report as a file: self-contained, escaped, readable back from xscreen run's outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from xscreen.report import (
    ReportContent,
    ReportOptionError,
    ResultRow,
    ResultsFileError,
    ResultTable,
    check_report_target,
    read_results,
    render_report,
    write_report,
)
from xscreen.report._overlay import encode_thumbnail, render_overlay

LABELS = ("healthy", "pneumonia", "covid")
HOSTILE = "<script>alert(1)</script>.png"


def table_of(rows: list[ResultRow]) -> ResultTable:
    return ResultTable(LABELS, rows, Path("results.csv"))


def sample_rows() -> list[ResultRow]:
    return [
        ResultRow(f"scans/{HOSTILE}", "ok", "covid", [0.01, 0.02, 0.97], True, None),
        ResultRow('scans/a "quoted" & <b>bold</b>.png', "ok", "healthy", [0.9, 0.05, 0.05], False, None),
        ResultRow("scans/broken.png", "error", None, None, None, "corrupt image: </script><img src=x>"),
    ]


def a_thumbnail() -> bytes:
    cam = np.zeros((7, 7), np.float32)
    cam[3, 2] = 1.0
    return encode_thumbnail(render_overlay(np.full((64, 64), 90, np.uint8), cam, "covid 0.97", 256))


def test_hostile_file_names_and_errors_stay_text():
    page = render_report(table_of(sample_rows()), ReportContent(thumbnails={0: a_thumbnail()},
                                                                notes=["<i>note</i>"]))
    assert "<script>alert" not in page and "<img src=x>" not in page and "<b>bold" not in page
    assert page.count("<script") == 2  # the data block and the page's own script, nothing injected
    assert "&lt;i&gt;note&lt;/i&gt;" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)[1])
    assert data["rows"][0][0] == f"scans/{HOSTILE}"  # the JSON escapes decode back to the real name
    assert data["rows"][2][5] == "corrupt image: </script><img src=x>"


def test_the_report_needs_no_network():
    page = render_report(table_of(sample_rows()), ReportContent(thumbnails={0: a_thumbnail()}))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "default-src 'none'" in page  # and the browser would block a request anyway
    assert "data:image/jpeg;base64," in page


def test_the_report_shows_not_a_medical_device_and_the_model_facts():
    content = ReportContent(model_facts=[("labels", "healthy, pneumonia, covid"), ("screening flag", "review when x")],
                            caveats="children 1-5 from one hospital")
    page = render_report(table_of(sample_rows()), content)
    assert page.index("Not a medical device") < page.index("<h1>")
    assert "review when x" in page and "children 1-5 from one hospital" in page


def test_a_thousand_flagged_films_keep_the_file_small(tmp_path):
    thumbnail = a_thumbnail()
    rows = [ResultRow(f"f{i}.png", "ok", "covid", [0.0, 0.1, 0.9], True, None) for i in range(10_000)]
    out = write_report(table_of(rows), ReportContent(thumbnails=dict.fromkeys(range(1000), thumbnail)),
                       tmp_path / "r.html")
    assert out.stat().st_size < 1000 * len(thumbnail) * 1.4 + 2_000_000


def test_results_read_back_from_csv_and_jsonl_with_a_torn_last_line(tmp_path):
    csv_file = tmp_path / "results.csv"
    csv_file.write_text(
        "path,status,prediction,prob_healthy,prob_pneumonia,prob_covid,flag,error\n"
        f'"{HOSTILE}",ok,covid,0.010000,0.020000,0.970000,true,\n'
        "b.png,error,,,,,,corrupt image\n"
        "c.png,ok,heal", encoding="utf-8")
    table = read_results(csv_file)
    assert table.labels == LABELS and [r.path for r in table.rows] == [HOSTILE, "b.png"]
    assert table.rows[0].probabilities == [0.01, 0.02, 0.97] and table.rows[0].flag is True
    assert table.rows[1].probabilities is None and table.rows[1].error == "corrupt image"
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text(json.dumps({"path": "a.png", "status": "ok", "prediction": "covid", "flag": False,
                                 "probabilities": dict(zip(LABELS, (0.1, 0.2, 0.7))), "error": None})
                     + '\n{"path": "b.p', encoding="utf-8")
    table = read_results(jsonl)
    assert table.labels == LABELS and len(table.rows) == 1 and table.rows[0].flag is False


@pytest.mark.parametrize("name, text", [("notes.txt", "x"), ("results.csv", "a,b\n1,2\n")])
def test_a_file_that_is_not_a_result_file_is_refused(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ResultsFileError, match="not a result file"):
        read_results(tmp_path / name)


def test_a_report_never_replaces_a_file_xscreen_did_not_write(tmp_path):
    mine = write_report(table_of(sample_rows()), ReportContent(), tmp_path / "report.html")
    check_report_target(mine, overwrite=False)  # an earlier report: replaced
    theirs = tmp_path / "notes.html"
    theirs.write_text("<html>my notes</html>")
    with pytest.raises(ReportOptionError, match="not an xscreen report"):
        check_report_target(theirs, overwrite=False)
    check_report_target(theirs, overwrite=True)
    with pytest.raises(ReportOptionError, match=r"\.html"):
        check_report_target(tmp_path / "report.csv", overwrite=False)


def report_data(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)[1])


def test_the_gallery_shows_the_most_uncertain_flagged_films_first_and_says_so():
    from xscreen.report._build import most_uncertain_first

    margins = ["0.300000", "0.010000", "", "0.050000"]
    rows = [ResultRow(f"f{i}.png", "ok", "covid", [0.0, 0.1, 0.9], True, None, extra={"margin": m})
            for i, m in enumerate(margins)]
    # xscreen report gives its thumbnails to the flagged films closest to the threshold
    assert [r.path for r in most_uncertain_first(rows)] == ["f1.png", "f3.png", "f0.png", "f2.png"]
    page = render_report(table_of(rows), ReportContent(thumbnails={1: a_thumbnail(), 3: a_thumbnail()}))
    assert [row[9] for row in report_data(page)["rows"]] == [0.3, 0.01, None, 0.05]  # what the gallery sorts by
    assert ("2 of 4 flagged films shown with their heatmap (those closest to the review threshold), "
            "the most uncertain first") in page
    script = (Path(render_report.__code__.co_filename).parent / "templates" / "report.js").read_text()
    assert "Math.abs(r[P.margin])" in script


def test_out_of_scope_rows_have_their_own_class_colour_and_heading():
    rows = [ResultRow("photo.png", "out_of_scope", None, None, None, "a colour photo, not a radiograph"),
            ResultRow("broken.png", "error", None, None, None, "corrupt image")]
    page = render_report(table_of(rows), ReportContent())
    css_rules = dict(re.findall(r"#results tr\.([\w-]+) td \{([^}]*)\}", page))
    assert "out-of-scope" in css_rules and css_rules["out-of-scope"] != css_rules["error"]
    assert '{error: "error", out_of_scope: "out-of-scope"}' in page
    assert 'title: "out of scope because"' in page
    # names break after a separator, not inside a word
    assert "overflow-wrap: anywhere" not in re.search(r"#results td\.path \{[^}]*\}", page)[0]
    assert 'createElement("wbr")' in page
