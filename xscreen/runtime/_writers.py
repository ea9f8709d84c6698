"""Result files: CSV (default) or JSON Lines, chosen by suffix, streamed and resumable.

Rows are written and flushed one batch at a time, so a run that is killed loses nothing it
already wrote. Every row ends with a newline; a killed run can therefore leave at most one torn
last line, which resuming truncates before appending.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ._pipeline import ScreeningResult

_ENCODING = dict(encoding="utf-8", errors="surrogateescape")  # any file name round-trips
_PROB_DECIMALS = 6
_SCORE_DECIMALS = 3
STATUSES = ("ok", "error", "out_of_scope")


class ResumeError(ValueError):
    """An existing output file that cannot be resumed; the message says why and what to do."""


def result_columns(labels: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """CSV header: ``path,status,prediction,prob_<label>...,flag,margin,review_reason,scope_score,error``,
    then the ``extra`` columns of a caller that knows more about each file (``xscreen serve``: its DICOM UIDs)."""
    return ["path", "status", "prediction", *(f"prob_{label}" for label in labels), "flag", "margin",
            "review_reason", "scope_score", "error", *extra]


class _ResultWriter:
    """Appends result rows to a file; when resuming, ``done`` holds the paths already in it and
    ``earlier`` counts those rows by ``(status, prediction, flag)``, so a summary can cover the whole file.
    ``extra``: more columns after the standard ones, filled from the mappings given to :meth:`write`."""

    def __init__(self, path: Path, labels: Sequence[str], resume: bool, extra: Sequence[str] = ()) -> None:
        self.path = path
        self.labels = tuple(labels)
        self.extra = tuple(extra)
        self.done: set[str] = set()
        self.earlier: Counter[tuple[str, str | None, bool | None]] = Counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = self._resume_point() if resume and path.exists() else 0
        if keep:
            os.truncate(path, keep)  # drops a torn last line, if any
        self._fh = open(path, "a" if keep else "w", newline="", **_ENCODING)
        self._start(fresh=not keep)

    def _resume_point(self) -> int:
        """Read the rows already written into ``done``; return the byte length to keep (0: start over)."""
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        text = complete.decode(**_ENCODING)
        return self._read_existing(text)

    def write(self, results: Iterable[ScreeningResult], extras: Iterable[Mapping[str, str]] | None = None) -> None:
        """Append rows and flush them to the operating system; ``extras``: one mapping per result for the
        ``extra`` columns (a missing key is an empty cell)."""
        for result, extra in zip(results, extras) if extras is not None else ((r, {}) for r in results):
            self._write_row(result, extra)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _damaged(self, line: int, why: str) -> ResumeError:
        return ResumeError(
            f"cannot resume {self.path}: line {line} {why}; it was not written by xscreen run "
            "(or was edited). Choose another output or pass --overwrite"
        )

    def _start(self, fresh: bool) -> None:
        """Prepare for writing rows; ``fresh``: the file is empty."""

    def _write_row(self, result: ScreeningResult, extra: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _read_existing(self, text: str) -> int:
        """Fill ``done`` from the complete lines ``text``; return how many characters to keep."""
        raise NotImplementedError


class CsvResultWriter(_ResultWriter):
    def _start(self, fresh: bool) -> None:
        self._csv = csv.writer(self._fh, lineterminator="\n")
        if fresh:
            self._csv.writerow(result_columns(self.labels, self.extra))

    def _write_row(self, r: ScreeningResult, extra: Mapping[str, str]) -> None:
        probs = r.probabilities
        self._csv.writerow([
            r.path, r.status, r.prediction or "",
            *(("" if probs is None else f"{probs[label]:.{_PROB_DECIMALS}f}") for label in self.labels),
            "" if r.flag is None else str(r.flag).lower(),
            "" if r.margin is None else f"{r.margin:.{_PROB_DECIMALS}f}",
            r.review_reason or "",
            "" if r.scope_score is None else f"{r.scope_score:.{_SCORE_DECIMALS}f}",
            _one_line(r.error),
            *(_one_line(extra.get(column)) for column in self.extra),
        ])

    def _read_existing(self, text: str) -> int:
        lines = _LineCounter(text)
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return 0  # nothing complete yet, not even the header
        expected = result_columns(self.labels, self.extra)
        if header != expected:
            raise ResumeError(
                f"cannot resume {self.path}: its columns ({','.join(header)}) are not this model's "
                f"({','.join(expected)}). Choose another output or pass --overwrite"
            )
        keep = lines.consumed
        try:
            for row in reader:
                if len(row) != len(expected) or row[1] not in STATUSES:
                    raise self._damaged(reader.line_num, "is not a result row")
                self.done.add(row[0])
                flag = row[len(self.labels) + 3]
                self.earlier[(row[1], row[2] or None, None if flag == "" else flag == "true")] += 1
                keep = lines.consumed
        except csv.Error as exc:
            # The file ends inside a quoted field (a file name with a newline, torn): drop that row.
            if not lines.exhausted:
                raise self._damaged(reader.line_num, f"is not valid CSV ({exc})") from exc
        return len(text[:keep].encode(**_ENCODING))


class JsonlResultWriter(_ResultWriter):
    """One JSON object per line, always valid UTF-8: a file name that is not (bytes a POSIX name may hold)
    is written with U+FFFD in ``path`` and its exact bytes, as hex, in ``path_bytes``."""

    def _write_row(self, r: ScreeningResult, extra: Mapping[str, str]) -> None:
        row = {
            **_json_path(r.path), "status": r.status, "prediction": r.prediction,
            "probabilities": None if r.probabilities is None
            else {label: round(r.probabilities[label], _PROB_DECIMALS) for label in self.labels},
            "flag": r.flag, "margin": None if r.margin is None else round(r.margin, _PROB_DECIMALS),
            "review_reason": r.review_reason,
            "scope_score": None if r.scope_score is None else round(r.scope_score, _SCORE_DECIMALS),
            "error": None if r.error is None else _valid_text(r.error),
            **{column: extra.get(column) for column in self.extra},
        }
        self._fh.write(json.dumps(row) + "\n")

    def _read_existing(self, text: str) -> int:
        for number, line in enumerate(text.split("\n")[:-1], 1):
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and row.get("status") in STATUSES and isinstance(row.get("path"), str)
                path = _row_path(row) if ok else None
            except (ValueError, TypeError):  # not JSON, or a path_bytes that is not hex
                ok = False
            if not ok:
                raise self._damaged(number, "is not a result row")
            probs = row.get("probabilities")
            if probs is not None and tuple(probs) != self.labels:
                raise ResumeError(
                    f"cannot resume {self.path}: its rows have labels {list(probs)}, this model "
                    f"has {list(self.labels)}. Choose another output or pass --overwrite"
                )
            self.done.add(path)
            self.earlier[(row["status"], row.get("prediction"), row.get("flag"))] += 1
        return len(text.encode(**_ENCODING))


class _LineCounter(Iterator[str]):
    """Feeds csv.reader line by line, counting the characters it has consumed."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self._left = len(text)
        self.consumed = 0

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.consumed += len(line)
        return line

    @property
    def exhausted(self) -> bool:
        return self.consumed >= self._left


WRITERS = {".csv": CsvResultWriter, ".jsonl": JsonlResultWriter}
OUTPUT_SUFFIXES = tuple(WRITERS)


def open_writer(out: str | os.PathLike, labels: Sequence[str], *, resume: bool, extra: Sequence[str] = ()):
    """Open a result file, CSV or JSONL by its suffix, for appending batches of results.

    ``resume=False`` starts the file afresh (replacing it). ``resume=True`` keeps its complete
    rows (truncating a torn last line from a killed run) and lists their paths in ``.done``;
    raises ResumeError when the file holds other columns or lines that are not result rows.
    ``extra``: columns after the standard ones (see :func:`result_columns`).
    """
    out = Path(out)
    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        raise ValueError(f"unknown output format {out.suffix or '(no suffix)'!r} for {out}: use .csv or .jsonl")
    return writer(out, labels, resume, extra)


def _valid_text(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (surrogate escapes) replaced by U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _json_path(path: str) -> dict[str, str]:
    """The ``path`` field, plus ``path_bytes`` (hex) when the name is not valid UTF-8."""
    shown = _valid_text(path)
    if shown == path:
        return {"path": path}
    return {"path": shown, "path_bytes": path.encode("utf-8", "surrogateescape").hex()}


def _row_path(row: dict) -> str:
    """The file name a JSONL row was written for, as the runtime spells it (surrogate escapes and all)."""
    raw = row.get("path_bytes")
    return row["path"] if raw is None else bytes.fromhex(raw).decode("utf-8", "surrogateescape")


def _one_line(text: str | None) -> str:
    return "" if text is None else " ".join(text.split())
