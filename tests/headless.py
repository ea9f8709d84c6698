"""Headless Chromium for the report tests: the real browser a clinic PC would open the report in.

Debian's ``chromium`` package (``apt-get install -y chromium``; ``.ci/run`` installs it). Without
a browser the tests that need one skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium installed (apt-get install chromium): the report is tested in a real browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


def _chromium(page: Path, fragment: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120, check=True)


def dump_dom(page: Path, profile: Path, fragment: str = "") -> str:
    """The document after the page's script ran, opened as file://PAGE#FRAGMENT."""
    return _chromium(page, fragment, profile, "--dump-dom").stdout


def screenshot(page: Path, profile: Path, size: tuple[int, int] = (1280, 1400)) -> np.ndarray:
    """An RGB screenshot (height, width, 3) of the page's top."""
    shot = profile.parent / f"{page.stem}-screenshot.png"
    _chromium(page, "", profile, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}")
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB"))


class _TableRows(HTMLParser):
    """Rows of the ``#results`` table body: (tr class, [cell texts])."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.scripts = 0
        self.count_attrs: dict[str, str] = {}
        self._table = self._body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "p" and attrs.get("id") == "count":
            self.count_attrs = attrs
        if tag == "table" and attrs.get("id") == "results":
            self._table = True
        elif self._table and tag == "tbody":
            self._body = True
        elif self._body and tag == "tr":
            self.rows.append((attrs.get("class") or "", []))
        elif self._body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None
        elif tag == "tbody":
            self._body = False
        elif tag == "table":
            self._table = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse_dom(dom: str) -> _TableRows:
    parser = _TableRows()
    parser.feed(dom)
    return parser
