"""A Parquet result folder: rows as pyarrow Tables with the CSV's columns, and the folder read back for a resume.

The Ray workers write the part files themselves; the driver only opens the folder through
:func:`xscreen.runtime._run.open_run_output` (the same lock, run record and model check as a CSV
file) with :class:`ParquetRows`, which reads what earlier runs wrote, or clears it when the run
starts afresh, and then lists the parts this run added.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..runtime import ResumeError, ScreeningResult, result_columns

PARQUET_SUFFIX = ".parquet"
_ARROW_TYPES = {"flag": "bool_", "margin": "float64", "scope_score": "float64"}  # else text; prob_*: float64


def results_table(results: Sequence[ScreeningResult], labels: Sequence[str]):
    """Result rows as a pyarrow Table with the CSV's columns (:func:`result_columns`; empty cells null)."""
    import pyarrow as pa

    probability = {f"prob_{label}": label for label in labels}
    values = [[None if r.probabilities is None else r.probabilities[probability[column]] for r in results]
              if column in probability else [getattr(r, column) for r in results]
              for column in result_columns(labels)]
    return pa.table(values, schema=_schema(labels))


def results_from_table(table, labels: Sequence[str]) -> list[ScreeningResult]:
    """The inverse of :func:`results_table`."""
    probability = {f"prob_{label}": label for label in labels}
    results = []
    for row in table.to_pylist():
        probabilities = {probability[c]: row[c] for c in probability}
        fields = {column: value for column, value in row.items() if column not in probability}
        has_probabilities = any(p is not None for p in probabilities.values())
        results.append(ScreeningResult(**fields, probabilities=probabilities if has_probabilities else None))
    return results


def _schema(labels: Sequence[str]):
    import pyarrow as pa

    probabilities = {f"prob_{label}" for label in labels}
    return pa.schema([
        (column, pa.float64() if column in probabilities else getattr(pa, _ARROW_TYPES.get(column, "string"))())
        for column in result_columns(labels)
    ])


class ParquetRows:
    """A Parquet result folder opened for a run, the counterpart of a CSV/JSONL writer.

    ``resume``: ``done`` holds the paths already in it and ``earlier`` counts those rows by
    ``(status, prediction, flag)``; ResumeError for a torn part or other columns. Otherwise the part
    files of earlier runs are deleted (the run replaces them). :meth:`new_parts` lists what was
    written since.
    """

    def __init__(self, folder: str | Path, labels: Sequence[str], *, resume: bool) -> None:
        self.folder = Path(folder)
        self.labels = tuple(labels)
        self.done: set[str] = set()
        self.earlier: Counter[tuple[str, str | None, bool | None]] = Counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        if resume:
            self._read_existing()
        else:
            for part in self._parts():
                part.unlink()
        self._before = set(self._parts())

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{PARQUET_SUFFIX}"))

    def new_parts(self) -> list[Path]:
        """The part files written into the folder since it was opened."""
        return [part for part in self._parts() if part not in self._before]

    def _read_existing(self) -> None:
        import pyarrow.parquet as pq

        expected = result_columns(self.labels)
        for part in self._parts():
            try:
                columns = pq.read_schema(part).names
                table = pq.read_table(part, columns=["path", "status", "prediction", "flag"]) \
                    if columns == expected else None
            except (OSError, ValueError) as exc:
                raise ResumeError(
                    f"cannot resume {self.folder}: {part.name} is not a readable Parquet file (torn by a killed "
                    f"run?): delete that file and resume, its images are screened again ({_first_line(exc)})"
                ) from None
            if table is None:
                raise ResumeError(
                    f"cannot resume {self.folder}: {part.name} has columns ({','.join(columns)}), this model's "
                    f"are ({','.join(expected)}). Choose another output or pass --overwrite"
                )
            for row in table.to_pylist():
                self.done.add(row["path"])
                self.earlier[(row["status"], row["prediction"], row["flag"])] += 1

    def close(self) -> None:
        """Nothing to flush: the workers wrote and closed their own files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
