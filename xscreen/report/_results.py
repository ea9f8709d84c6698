"""Reading a result file written by ``xscreen run`` (CSV or JSONL) back into rows for a report."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime._writers import OUTPUT_SUFFIXES

_ENCODING = dict(encoding="utf-8", errors="surrogateescape")  # as the writers: any file name round-trips


class ResultsFileError(ValueError):
    """A file that is not an xscreen result file; the message says why."""


@dataclass
class ResultRow:
    """One film's row; ``probabilities`` in label order, None on error."""

    path: str
    status: str
    prediction: str | None
    probabilities: list[float] | None
    flag: bool | None
    error: str | None
    extra: dict[str, str] = field(default_factory=dict)  # columns a newer xscreen added (e.g. scope_score)


@dataclass
class ResultTable:
    labels: tuple[str, ...]
    rows: list[ResultRow]
    source: Path


def read_results(path: str | os.PathLike) -> ResultTable:
    """Read every complete row of a ``.csv`` or ``.jsonl`` result file; ResultsFileError if it is not one."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ResultsFileError(f"{path}: not a result file ({' or '.join(OUTPUT_SUFFIXES)} written by xscreen run)")
    text = path.read_text(**_ENCODING)
    reader = _read_jsonl if path.suffix.lower() == ".jsonl" else _read_csv
    try:
        labels, rows = reader(text)
    except (ValueError, KeyError, TypeError, csv.Error) as exc:
        raise ResultsFileError(f"{path}: not a result file written by xscreen run ({exc})") from None
    return ResultTable(labels, rows, path)


def _read_csv(text: str) -> tuple[tuple[str, ...], list[ResultRow]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if not {"path", "status", "prediction", "flag", "error"} <= set(header):
        raise ValueError("the columns path, status, prediction, flag, error are missing")
    labels = tuple(c[len("prob_"):] for c in header if c.startswith("prob_"))
    known = {"path", "status", "prediction", "flag", "error", *(f"prob_{label}" for label in labels)}
    rows = []
    for raw in reader:
        if None in raw.values():
            continue  # a torn last line of a killed run
        probs = [raw[f"prob_{label}"] for label in labels]
        rows.append(ResultRow(
            path=raw["path"], status=raw["status"], prediction=raw["prediction"] or None,
            probabilities=[float(p) for p in probs] if all(probs) else None,
            flag={"true": True, "false": False}.get(raw["flag"]),
            error=raw["error"] or None,
            extra={k: v for k, v in raw.items() if k not in known},
        ))
    return labels, rows


def _read_jsonl(text: str) -> tuple[tuple[str, ...], list[ResultRow]]:
    labels: tuple[str, ...] = ()
    rows = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # a torn last line of a killed run
            raise
        probs = raw.get("probabilities")
        if probs and not labels:
            labels = tuple(probs)
        rows.append(ResultRow(
            path=raw["path"], status=raw["status"], prediction=raw.get("prediction"),
            probabilities=None if probs is None else [float(probs[label]) for label in labels],
            flag=raw.get("flag"), error=raw.get("error"),
            extra={k: "" if v is None else str(v) for k, v in raw.items()
                   if k not in ("path", "status", "prediction", "probabilities", "flag", "error")},
        ))
    return labels, rows
