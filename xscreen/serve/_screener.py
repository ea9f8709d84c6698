"""Screening films as they arrive: one thread that batches whatever is waiting and writes rows.

Received (or newly complete) files are queued; the screening thread takes everything waiting, up
to a few batches, and runs it through the runtime's :func:`screen_batches`, the same decode,
scope check and model call as ``xscreen run``. A lone film is screened at once; under load the
batches fill up and decoding overlaps inference as in a run. Rows go to the result file through
the runtime's writers (:func:`open_run_output`: lock, model record, resume), so the result file is
the record of what was screened: a file with a row is never screened again, which makes restarts
exactly-once together with a durable inbox (the spool, or the watched folder).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack, closing
from pathlib import Path

from ..runtime import ScreeningModel, ScreeningResult
from ..runtime._pipeline import DEFAULT_BATCH_SIZE, PREFETCH_BATCHES, screen_batches
from ..runtime._run import RunSummary, open_run_output

log = logging.getLogger("xscreen.serve")

UID_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
IDENTIFIER_COLUMNS = ("patient_id", "accession_number")  # only with --keep-identifiers
# column -> the DICOM keyword it is read from
_HEADER_TAGS = dict(zip(UID_COLUMNS + IDENTIFIER_COLUMNS, ("StudyInstanceUID", "SeriesInstanceUID",
                                                           "SOPInstanceUID", "PatientID", "AccessionNumber")))

OnScreened = Callable[[list[ScreeningResult], list[dict[str, str]]], None]


def row_columns(keep_identifiers: bool = False) -> tuple[str, ...]:
    """The columns a row gets besides the runtime's: the UIDs, and patient ID and accession number with
    ``keep_identifiers``."""
    return UID_COLUMNS + IDENTIFIER_COLUMNS if keep_identifiers else UID_COLUMNS


def instance_columns(path: str | os.PathLike, keep_identifiers: bool = False) -> dict[str, str]:
    """A file's DICOM UIDs (and, with ``keep_identifiers``, patient ID and accession number) for its row;
    empty for a file that is not DICOM or cannot be read."""
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS.values()))
    except Exception:  # not DICOM (a PNG in a watched folder) or unreadable: the row says so elsewhere
        return {}
    return {column: str(header.get(_HEADER_TAGS[column], "") or "") for column in row_columns(keep_identifiers)}


class ArrivalScreener:
    """Screens files handed to :meth:`submit` and appends one row per file to ``out``.

    ``on_screened(results, columns)`` is called after each batch's results are complete and before
    their rows are written (so that what it makes durable, such as a result to send, exists before
    the row that says the file is done). :meth:`start` opens ``out`` (resuming it) and queues the
    ``pending`` files it has no row for; :meth:`close` stops after the batch in hand and closes ``out``.
    """

    def __init__(self, model: ScreeningModel, out: str | os.PathLike, *, keep_identifiers: bool = False,
                 batch_size: int | None = None, workers: int | None = None, scope_check: bool = True,
                 heatmaps: bool = False, on_screened: OnScreened | None = None) -> None:
        self.model = model
        self.out = Path(out)
        self.keep_identifiers = keep_identifiers
        self.columns = row_columns(keep_identifiers)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.workers = workers
        self.scope_check = scope_check
        self.heatmaps = heatmaps
        self.on_screened = on_screened
        self.summary = RunSummary(total=0, out=str(out), model=str(model.path), backend=model.backend,
                                  per_class=dict.fromkeys(model.labels, 0))
        self.arrived: dict[str, float] = {}  # path -> monotonic time it was queued, until its row is written
        self.latencies: deque[float] = deque(maxlen=100_000)  # seconds from queued to row written, latest files
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer = None
        self.failure: BaseException | None = None

    def start(self, pending: Iterable[str | os.PathLike] = ()) -> int:
        """Open the result file and start screening; queue the ``pending`` files without a row. Returns how many."""
        pending = [str(p) for p in pending]
        self._writer, to_do = self._stack.enter_context(open_run_output(
            self.out, self.model, pending, self.summary, resume=True, overwrite=False, progress=None,
            extra=self.columns))
        for path in to_do:
            self.submit(path)
        # pydicom imported here, before the thread: its first import racing the receiver's (pynetdicom imports it
        # too) left a partially initialised module and stopped screening after a restart.
        import pydicom  # noqa: F401
        self._thread = threading.Thread(target=self._screen_forever, name="xscreen-screen", daemon=True)
        self._thread.start()
        return len(to_do)

    def is_done(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` has a row, or is queued for one."""
        path = str(path)
        with self._lock:
            return path in self._queued or (self._writer is not None and path in self._writer.done)

    def submit(self, path: str | os.PathLike) -> bool:
        """Queue ``path`` unless it has a row or is queued already; True when queued."""
        path = str(path)
        with self._lock:
            if path in self._queued or path in self._writer.done:
                return False
            self._queued.add(path)
            self.arrived[path] = time.monotonic()
        self._queue.put(path)
        return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued file has its row (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self._thread is not None and self._thread.is_alive()):
            with self._lock:
                if not self._queued or self.failure is not None:
                    return self.failure is None
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Finish the batch being screened, then release the result file; files still queued have no row
        and are screened at the next start (their spool or folder still holds them)."""
        if self._thread is not None:
            self._closing.set()
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._stack.close()

    def _screen_forever(self) -> None:
        chunk_size = self.batch_size * PREFETCH_BATCHES
        try:
            while not self._closing.is_set():
                first = self._queue.get()
                if first is None or self._closing.is_set():
                    return
                chunk = [first]
                stop = False
                while len(chunk) < chunk_size:
                    try:
                        path = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if path is None:
                        stop = True
                        break
                    chunk.append(path)
                self._screen(chunk)
                if stop:
                    return
        except BaseException as exc:  # the result file cannot be written: stop, say why, lose nothing
            self.failure = exc
            log.error("screening stopped: %s", exc)

    def _screen(self, chunk: Sequence[str]) -> None:
        batches = screen_batches(chunk, self.model, batch_size=self.batch_size, workers=self.workers,
                                 heatmaps=self.heatmaps, scope_check=self.scope_check)
        with closing(batches):  # on close, the rest of the chunk stays without a row: screened at the next start
            for batch in batches:
                self._record(batch)
                if self._closing.is_set():
                    return

    def _record(self, batch: list[ScreeningResult]) -> None:
        """Write one batch's rows (after ``on_screened``), mark its files done, log them."""
        columns = [instance_columns(r.path, self.keep_identifiers) for r in batch]
        if self.on_screened is not None:
            self.on_screened(batch, columns)
        self._writer.write(batch, columns)
        now = time.monotonic()
        with self._lock:
            for result in batch:
                self._writer.done.add(result.path)
                self._queued.discard(result.path)
                self.latencies.append(now - self.arrived.pop(result.path, now))
        self.summary.add(batch)
        for result, column in zip(batch, columns):
            log.info("screened %s: %s", column.get("sop_instance_uid") or Path(result.path).name,
                     _outcome(result))


def _outcome(result: ScreeningResult) -> str:
    if result.status != "ok":
        return f"{result.status} ({result.error})"
    flag = "" if result.flag is None else (", review" if result.flag else ", no review")
    return f"{result.prediction} {max(result.probabilities.values()):.3f}{flag}"

