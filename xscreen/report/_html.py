"""The visual report: one self-contained HTML file from a result table, thumbnails and model facts.

The page is ``templates/report.html`` with ``report.css`` and ``report.js`` inlined, filled by
:class:`string.Template`; every value from a file or a model is escaped (:func:`html.escape` in the
markup, ``<``, ``>`` and ``&`` as JSON escapes in the data block), so a hostile file name stays text.
Its Content-Security-Policy allows no network at all; images are ``data:`` URIs. Rows travel as
one JSON block and the script builds the table a page at a time, so 10,000 films stay quick.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Template

from .. import __version__
from ._results import ResultTable

TEMPLATES = Path(__file__).resolve().parent / "templates"
TABLE_PAGE = 200  # rows the table shows at first and adds per "show more"
GALLERY_PAGE = 60  # flagged films the gallery shows at first and adds per "show more"


@dataclass
class ReportContent:
    """What a report shows besides the rows: images, model facts and notes for the reader."""

    thumbnails: dict[int, bytes] = field(default_factory=dict)  # row index -> JPEG bytes
    links: dict[int, str] = field(default_factory=dict)  # row index -> href of the full-size heatmap PNG
    model_facts: list[tuple[str, str]] | None = None  # None: the model is not known
    caveats: str | None = None
    run_facts: list[tuple[str, str]] = field(default_factory=list)  # speed etc. when made by xscreen run
    notes: list[str] = field(default_factory=list)
    # Which flagged films got a thumbnail when not all did (the gallery says so).
    thumbnail_choice: str = "those closest to the review threshold"


def render_report(table: ResultTable, content: ReportContent) -> str:
    """The report's HTML text."""
    thumb_index = {row: i for i, row in enumerate(sorted(content.thumbnails))}
    data = {
        "labels": list(table.labels),
        "rows": [
            [r.path, r.status, r.prediction, r.probabilities, r.flag, r.error, thumb_index.get(i, -1),
             content.links.get(i), _number(r.extra.get("scope_score")), _number(r.extra.get("margin"))]
            for i, r in enumerate(table.rows)
        ],
        "scope": any(r.extra.get("scope_score") for r in table.rows),
        "thumbs": ["data:image/jpeg;base64," + base64.b64encode(content.thumbnails[i]).decode("ascii")
                   for i in sorted(content.thumbnails)],
        "page": TABLE_PAGE,
        "gallery_page": GALLERY_PAGE,
    }
    flagged = sum(r.flag is True for r in table.rows)
    if not flagged:
        gallery_note = "No film was flagged for review."
    elif content.thumbnails:
        shown = len(content.thumbnails)
        chosen = f" ({content.thumbnail_choice})" if shown < flagged else ""
        gallery_note = (f"{shown:,} of {flagged:,} flagged films shown with their heatmap{chosen}, the most "
                        "uncertain first: closest to the review threshold.")
    else:
        gallery_note = f"No heatmaps for the {flagged:,} flagged films: see the notes in the summary."
    values = {
        "title": _escape(table.source.name),
        "generated": _escape(time.strftime("%Y-%m-%d %H:%M")),
        "version": _escape(__version__),
        "css": _template_text("report.css"),
        "js": _template_text("report.js"),
        "summary_rows": _fact_rows([*_summary_facts(table), *content.run_facts]),
        "notes": "\n".join(_template("note.html").substitute(text=_escape(n)) for n in content.notes),
        "gallery_note": _escape(gallery_note),
        "model_rows": _fact_rows(content.model_facts or [
            ("model", "not known to this report: a result file does not record its model; "
                      "pass --model to xscreen report"),
        ]),
        "caveats": _escape(content.caveats or "The model file carries no summary of its training data: "
                                              "ask whoever trained it what it was trained on."),
        "data": _json_for_script(data),
    }
    return _template("report.html").substitute(values)


def write_report(table: ResultTable, content: ReportContent, out: Path) -> Path:
    """Write the report to ``out`` (its folder is created); returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace: a file name that is not valid UTF-8 must not stop the report.
    out.write_text(render_report(table, content), encoding="utf-8", errors="backslashreplace")
    return out


def _summary_facts(table: ResultTable) -> list[tuple[str, str]]:
    rows = table.rows
    statuses = Counter(r.status for r in rows)
    predictions = Counter(r.prediction for r in rows if r.status == "ok")
    ok = statuses.get("ok", 0)
    facts = [("result file", str(table.source)), ("films", f"{len(rows):,}"), ("screened", f"{ok:,}")]
    facts += [(f"predicted {label}", _count(predictions[label], ok)) for label in table.labels]
    if any(r.flag is not None for r in rows):
        facts.append(("flagged for review", _count(sum(r.flag is True for r in rows), ok)))
    facts += [(status.replace("_", " "), f"{n:,}") for status, n in statuses.items() if status != "ok"]
    return facts


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _count(n: int, of: int) -> str:
    return f"{n:,} ({100 * n / of:.1f} %)" if of else f"{n:,}"


def _fact_rows(facts: Iterable[tuple[str, str]]) -> str:
    row = _template("fact_row.html")
    return "".join(row.substitute(key=_escape(k), value=_escape(v)) for k, v in facts)


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _json_for_script(data: Mapping) -> str:
    """JSON that cannot end its <script> block or open markup, whatever the file names hold."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _template_text(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _template(name: str) -> Template:
    return Template(_template_text(name))


GENERATOR_MARK = '<meta name="generator" content="xscreen'


class ReportOptionError(ValueError):
    """The report would replace a file xscreen did not write, or is not an .html file."""


def check_report_target(out: Path, overwrite: bool) -> None:
    """Refuse an output that is not ``.html``, or that holds a file which is not an xscreen report."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportOptionError(f"{out}: a report is an .html file")
    if out.is_dir():
        raise ReportOptionError(f"{out} is a folder: name the report file, e.g. {out / 'report.html'}")
    if out.exists() and not overwrite:
        with open(out, "rb") as fh:
            head = fh.read(2048).decode("utf-8", "replace")
        if GENERATOR_MARK not in head:
            raise ReportOptionError(f"{out} exists and is not an xscreen report: choose another name "
                                    "or pass --overwrite")
