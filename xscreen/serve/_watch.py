"""``xscreen watch DIR``: screen each film of a folder that fills over time, once it is complete.

Polling, not inotify: it works the same on a network share, a USB disk and a Pi, and costs one
folder walk per interval (names and sizes; content only for files without an image extension,
the first bytes, as ``xscreen run`` discovers them). A file is complete when its size and
modification time have not changed for ``settle_s`` seconds. The result file is the record: a
file with a row is never screened again, across restarts, so a restart screens exactly what the
last run had not written a row for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from ..runtime import discover_inputs
from ._screener import ArrivalScreener

log = logging.getLogger("xscreen.serve")

DEFAULT_SETTLE_S = 2.0
DEFAULT_POLL_S = 1.0


class FolderWatcher:
    """Hands every complete, not yet screened file under ``folder`` to ``screener``; :meth:`poll` once,
    or :meth:`run` until :meth:`stop`."""

    def __init__(self, folder: str | os.PathLike, screener: ArrivalScreener, *, settle_s: float = DEFAULT_SETTLE_S,
                 poll_s: float = DEFAULT_POLL_S, follow_symlinks: bool = False) -> None:
        self.folder = Path(folder)
        self.screener = screener
        self.settle_s = settle_s
        self.poll_s = poll_s
        self.follow_symlinks = follow_symlinks
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # path -> ((size, mtime), since when)
        self._stop = threading.Event()

    def poll(self) -> int:
        """One look at the folder; returns how many files were handed over."""
        now = time.monotonic()
        handed = 0
        present = set()
        for path in discover_inputs(self.folder, follow_symlinks=self.follow_symlinks):
            key = str(path)
            present.add(key)
            if self.screener.is_done(key):
                self._seen.pop(key, None)
                continue
            try:
                stat = path.stat()
            except OSError:  # gone between the walk and now
                continue
            state = (stat.st_size, stat.st_mtime_ns)
            previous = self._seen.get(key)
            if previous is None or previous[0] != state:
                self._seen[key] = (state, now)
            elif now - previous[1] >= self.settle_s:
                handed += self.screener.submit(key)
                self._seen.pop(key, None)
        for key in set(self._seen) - present:  # deleted before it was complete
            del self._seen[key]
        return handed

    @property
    def pending(self) -> int:
        """Files seen but not complete yet (still changing, or not unchanged for ``settle_s``)."""
        return len(self._seen)

    def run_until_done(self) -> None:
        """Poll until every file present has a row (``xscreen watch --once``)."""
        while True:
            self.poll()
            self.screener.wait_idle(timeout=float("inf"))
            if not self.pending:
                return
            self._stop.wait(self.poll_s)

    def run(self) -> None:
        """Poll every ``poll_s`` seconds until :meth:`stop`."""
        log.info("watching %s (a file is screened once unchanged for %.1f s)", self.folder, self.settle_s)
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
