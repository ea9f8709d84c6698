"""The report in a real browser (headless Chromium): the table, its filters and sort, the heatmaps on screen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from headless import dump_dom, needs_browser, parse_dom, screenshot

from xscreen.report import ReportContent, ResultRow, ResultTable, write_report
from xscreen.report._overlay import caption_for, encode_thumbnail, render_overlay
from xscreen.runtime._demo import synthetic_film

pytestmark = needs_browser
LABELS = ("healthy", "pneumonia", "covid")
HOSTILE = "<script>alert(1)</script>.png"
PATH, STATUS, PREDICTION, P_HEALTHY, P_PNEUMONIA, P_COVID, FLAG, ERROR = range(1, 9)  # table cells; 0 = heatmap


def rows_for_test(n: int) -> list[ResultRow]:
    """n films: every 7th an error, the rest spread over the labels; abnormal ones flagged."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        if i % 7 == 3:
            rows.append(ResultRow(f"ward/err{i}.png", "error", None, None, None, "corrupt image: truncated"))
            continue
        probs = rng.dirichlet([1, 1, 1]).tolist()
        label = LABELS[int(np.argmax(probs))]
        rows.append(ResultRow(f"ward/film{i}.png", "ok", label, probs, label != "healthy", None))
    rows[0] = ResultRow(f"ward/{HOSTILE}", "ok", "covid", [0.01, 0.01, 0.98], True, None)
    return rows


def thumbnail() -> bytes:
    cam = np.zeros((7, 7), np.float32)
    cam[2:5, 1:3] = 3.0
    film = (synthetic_film(1) * 255).astype(np.uint8)
    return encode_thumbnail(render_overlay(film, cam, caption_for("covid", 0.98, True), 256))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[ResultRow]]:
    folder = tmp_path_factory.mktemp("report")
    rows = rows_for_test(60)
    flagged = [i for i, r in enumerate(rows) if r.flag][:6]
    content = ReportContent(thumbnails=dict.fromkeys(flagged, thumbnail()))
    return write_report(ResultTable(LABELS, rows, Path("results.csv")), content, folder / "report.html"), rows


def open_report(page: Path, tmp_path: Path, fragment: str = ""):
    return parse_dom(dump_dom(page, tmp_path / "profile", fragment))


def test_every_film_is_a_row_and_the_hostile_name_is_text(report, tmp_path):
    page, rows = report
    dom = open_report(page, tmp_path)
    assert len(dom.rows) == len(rows) == int(dom.count_attrs["data-matching"])
    assert [cells[PATH] for _, cells in dom.rows] == [r.path for r in rows]
    assert dom.rows[0][1][PATH] == f"ward/{HOSTILE}" and dom.scripts == 2  # shown as text, never run


@pytest.mark.parametrize("fragment, keep", [
    ("flag=flagged", lambda r: r.flag is True),
    ("flag=not-flagged", lambda r: r.flag is False),
    ("label=pneumonia", lambda r: r.prediction == "pneumonia"),
    ("status=error", lambda r: r.status == "error"),
    ("pmin=0.7", lambda r: r.probabilities is not None and max(r.probabilities) >= 0.7),
    ("q=film1", lambda r: "film1" in r.path),
])
def test_filters_from_the_address_keep_exactly_the_matching_films(report, tmp_path, fragment, keep):
    page, rows = report
    dom = open_report(page, tmp_path, fragment)
    expected = [r.path for r in rows if keep(r)]
    assert expected and [cells[PATH] for _, cells in dom.rows] == expected
    assert int(dom.count_attrs["data-matching"]) == len(expected)


def test_sorting_by_a_probability_orders_the_rows_and_puts_errors_last(report, tmp_path):
    page, rows = report
    dom = open_report(page, tmp_path, "sort=prob_covid&dir=desc")
    values = [cells[P_COVID] for _, cells in dom.rows]
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == sum(r.status == "ok" for r in rows)
    assert all(not v for v in values[len(numbers):])
    assert dom.rows[0][1][P_COVID] == "0.980"


def test_ten_thousand_films_render_a_page_at_a_time(tmp_path):
    rows = rows_for_test(10_000)
    page = write_report(ResultTable(LABELS, rows, Path("big.csv")), ReportContent(), tmp_path / "big.html")
    dom = open_report(page, tmp_path, "flag=flagged")
    flagged = sum(r.flag is True for r in rows)
    assert int(dom.count_attrs["data-matching"]) == flagged and len(dom.rows) == 200
    assert all("flagged" in cls for cls, _ in dom.rows)


def heatmap_coloured(pixels: np.ndarray) -> int:
    """Pixels in the green-to-yellow middle of the heatmap colours: neither grey film nor page chrome."""
    r, g, b = (pixels[..., c].astype(int) for c in range(3))
    return int(((g > r + 20) & (g > b + 20)).sum())


def test_the_screenshot_shows_the_page_and_the_heatmaps(report, tmp_path):
    page, rows = report
    pixels = screenshot(page, tmp_path / "profile")
    assert pixels.std() > 20  # not a blank page
    banner = pixels[5, 5]
    assert banner[0] > 150 and banner[1] < 60  # the red "Not a medical device" banner at the top
    assert heatmap_coloured(pixels) > 200
    plain = write_report(ResultTable(LABELS, rows, Path("results.csv")), ReportContent(), tmp_path / "plain.html")
    assert heatmap_coloured(screenshot(plain, tmp_path / "profile2")) == 0


def test_out_of_scope_rows_and_the_gallery_order_in_the_browser(tmp_path):
    import re

    margins = [0.30, 0.01, None, 0.05]
    rows = [ResultRow(f"ward/film{i}.png", "ok", "covid", [0.0, 0.1, 0.9], True, None,
                      extra={"margin": "" if m is None else str(m)}) for i, m in enumerate(margins)]
    rows += [ResultRow("ward/photo.png", "out_of_scope", None, None, None, "out of scope: a colour photo"),
             ResultRow("ward/broken.png", "error", None, None, None, "corrupt image: truncated")]
    page = write_report(ResultTable(LABELS, rows, Path("results.csv")),
                        ReportContent(thumbnails=dict.fromkeys(range(4), thumbnail())), tmp_path / "report.html")
    dom = dump_dom(page, tmp_path / "profile")
    # the gallery: smallest |margin| first, a film without a margin last
    assert re.findall(r"<figcaption>ward/(film\d)\.png:", dom) == ["film1", "film3", "film0", "film2"]
    table = {cells[PATH]: (row_class, cells) for row_class, cells in parse_dom(dom).rows}
    headings = re.findall(r'<th data-key="(\w+)"', dom)
    reason, error = headings.index("scope_reason"), headings.index("error")
    photo_class, photo = table["ward/photo.png"]
    broken_class, broken = table["ward/broken.png"]
    assert photo_class == "out-of-scope" and broken_class == "error"
    assert photo[reason] == "out of scope: a colour photo" and photo[error] == ""
    assert broken[error] == "corrupt image: truncated" and broken[reason] == ""
