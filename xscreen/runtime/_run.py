"""``xscreen run`` as a function: discover, screen, stream rows to a file, summarise."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable

from ._decode import IMAGE_EXTENSIONS
from ._discover import HIDDEN, SYMLINK_DIR, SYMLINK_OUT, discover_inputs
from ._model import ScreeningModel, load_model
from ._pipeline import ScreeningResult, StageTimes, screen_batches
from ._run_record import check_resume, locked_output, write_record
from ._writers import open_writer

FIRST_ERRORS = 5  # error reasons kept for the summary; every error is in the output file


class NoInputsError(ValueError):
    """The target holds nothing to screen."""


class OutputExistsError(ValueError):
    """The output file holds rows and the run was asked neither to resume nor to overwrite."""


@dataclass
class RunSummary:
    """What is in the output file after a run: ``ok``, ``errors``, ``per_class`` and ``flagged`` count
    every row of the file, the ``earlier`` ones kept from runs before a resume included;
    ``new_ok``/``new_errors`` are this run's, and the speed is theirs."""

    total: int  # distinct files found under the target
    out: str
    model: str
    backend: str
    ok: int = 0  # screened: a prediction was made
    errors: int = 0  # could not be screened
    out_of_scope: int = 0  # not screened: not a frontal chest film, by its DICOM header or its image
    earlier: int = 0  # rows kept from earlier runs (--resume)
    new_ok: int = 0
    new_errors: int = 0  # this run's errors and out-of-scope rows
    skipped_resumed: int = 0  # files of the target already in the output file, not screened again
    earlier_elsewhere: int = 0  # earlier rows whose file is not in this run's input (resumed on another input)
    duplicates: int = 0  # list entries naming a file already listed: screened once
    per_class: dict[str, int] = field(default_factory=dict)  # predictions in the file, in label order
    flagged: int = 0  # needs review according to the model's threshold
    first_errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), this run's
    first_out_of_scope: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), this run's
    ignored: dict[str, int] = field(default_factory=dict)  # folder entries not screened, by reason
    warnings: list[str] = field(default_factory=list)  # what the user must know even with --quiet
    first_ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), hidden entries left out
    elapsed_s: float = 0.0
    decode_s: float = 0.0  # decoding + resizing, summed over the decoding threads
    inference_s: float = 0.0
    write_s: float = 0.0

    @property
    def screened(self) -> int:
        """Rows with a prediction; errors and out-of-scope files are not screened."""
        return self.ok

    @property
    def rows(self) -> int:
        return self.ok + self.errors + self.out_of_scope

    @property
    def new_rows(self) -> int:
        """Files this run finished: screened, out of scope or failed."""
        return self.new_ok + self.new_errors

    @property
    def images_per_s(self) -> float | None:
        """Files this run finished per second of the run, as the progress line counts them; None when it
        screened none."""
        return self.new_rows / self.elapsed_s if self.new_ok and self.elapsed_s > 0 else None

    def to_dict(self) -> dict:
        """JSON-ready, with the derived figures."""
        return {**asdict(self), "screened": self.screened, "rows": self.rows, "new_rows": self.new_rows,
                "images_per_s": self.images_per_s}

    def add(self, results: list[ScreeningResult]) -> None:
        """Count one batch of this run's results."""
        for r in results:
            self._count(r.status, r.prediction, r.flag)
            if r.status == "ok":
                self.new_ok += 1
            elif r.status == "out_of_scope":
                self.new_errors += 1
                if len(self.first_out_of_scope) < FIRST_ERRORS:
                    self.first_out_of_scope.append((r.path, r.error))
            else:
                self.new_errors += 1
                if len(self.first_errors) < FIRST_ERRORS:
                    self.first_errors.append((r.path, r.error))

    def add_earlier(self, rows: Counter) -> None:
        """Count rows kept from earlier runs, by ``(status, prediction, flag)``."""
        for (status, prediction, flag), n in rows.items():
            self._count(status, prediction, flag, n)
            self.earlier += n

    def _count(self, status: str, prediction: str | None, flag: bool | None, n: int = 1) -> None:
        if status == "ok":
            self.ok += n
            self.per_class[prediction] = self.per_class.get(prediction, 0) + n
            self.flagged += n * bool(flag)
        elif status == "out_of_scope":
            self.out_of_scope += n
        else:
            self.errors += n


def run_screening(
    target: str | os.PathLike,
    model: ScreeningModel | str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = True,
    workers: int | None = None,
    batch_size: int | None = None,
    follow_symlinks: bool = False,
    progress: Callable[[int, int], None] | None = None,
    heatmaps: bool = False,
    scope_check: bool = True,
    on_batch: Callable[[list[ScreeningResult]], None] | None = None,
) -> RunSummary:
    """Screen every image under ``target`` with ``model`` and write one row per file to ``out``.

    ``out`` is CSV or JSONL by its suffix and is replaced unless ``resume``, which keeps its rows
    and screens only the files not in it yet (``overwrite=False`` refuses to replace a file with
    rows: OutputExistsError). ``out`` is locked while the run writes it (OutputInUseError for a
    second run) and ``<out>.meta.json`` records the model that wrote it; a resume with another
    model raises ResumeError. A file listed twice is screened once. ``progress(done, to_do)`` is
    called before the first batch and after each one. ``heatmaps`` and ``scope_check``: see
    :func:`screen_batches`; ``on_batch(results)`` receives each batch once it is written (with its
    heatmaps). Raises NoInputsError when ``target`` holds no images, and the errors of
    :func:`load_model` and :func:`open_writer`.
    """
    if not isinstance(model, ScreeningModel):
        model = load_model(model)
    started = time.perf_counter()
    paths, summary = start_run(target, model, out, follow_symlinks=follow_symlinks)
    times = StageTimes()
    with open_run_output(out, model, paths, summary, resume=resume, overwrite=overwrite,
                         progress=progress) as (writer, to_do):
        batches = screen_batches(to_do, model, workers=workers, batch_size=batch_size, times=times,
                                 heatmaps=heatmaps, scope_check=scope_check)
        with closing(batches):
            for batch in batches:
                write_started = time.perf_counter()
                writer.write(batch)
                summary.write_s += time.perf_counter() - write_started
                summary.add(batch)
                if on_batch:
                    on_batch(batch)
                if progress:
                    progress(summary.new_rows, len(to_do))
    summary.decode_s, summary.inference_s = times.decode_s, times.inference_s
    summary.elapsed_s = time.perf_counter() - started
    return summary


def start_run(target: str | os.PathLike, model: ScreeningModel, out: str | os.PathLike, *,
              follow_symlinks: bool = False) -> tuple[list[str], RunSummary]:
    """The files a run screens, in discovery order and once each, and its empty summary; shared by every engine.

    Raises NoInputsError when ``target`` holds no images.
    """
    ignored: Counter[str] = Counter()
    first_ignored: list[tuple[str, str]] = []

    def on_ignored(path, reason: str) -> None:
        ignored[reason] += 1
        if reason != HIDDEN and len(first_ignored) < FIRST_ERRORS:
            first_ignored.append((str(path), reason))

    listed = [str(p) for p in discover_inputs(target, follow_symlinks=follow_symlinks, on_ignored=on_ignored)]
    paths = list(dict.fromkeys(listed))  # a list naming a file twice: one row
    if not paths:
        links = ignored[SYMLINK_OUT] + ignored[SYMLINK_DIR]
        hint = (f"; {links:,} symlinks leading out of it were not followed (pass --follow-symlinks)"
                if links else "")
        raise NoInputsError(
            f"no images in {target}: xscreen reads {', '.join(IMAGE_EXTENSIONS)} files and DICOM "
            f"files without an extension{hint}"
        )
    summary = RunSummary(total=len(paths), out=str(out), model=str(model.path), backend=model.backend,
                         duplicates=len(listed) - len(paths), per_class=dict.fromkeys(model.labels, 0),
                         ignored=dict(ignored), first_ignored=first_ignored)
    return paths, summary


@contextmanager
def open_run_output(out, model: ScreeningModel, paths: list[str], summary: RunSummary, *, resume: bool,
                    overwrite: bool, progress: Callable[[int, int], None] | None, open_rows=None,
                    extra: Sequence[str] = ()):
    """Lock ``out`` and open its writer for any engine; yield ``(writer, paths not in it yet)``.

    ``open_rows(out, labels, resume=)``: the rows of a result folder (the Ray engine's Parquet), with
    ``done``, ``earlier`` and ``close`` like a writer; default: :func:`open_writer` on a CSV/JSONL file,
    with ``extra`` columns (see :func:`result_columns`).
    A file counts as done when its resolved path is in ``out``, whatever its spelling there. The rows of
    earlier runs are counted into ``summary`` (with a warning for those not in this input) and
    ``progress(0, to_do)`` is called.
    """
    folder = open_rows is not None
    if open_rows is None:
        def open_rows(out, labels, *, resume):
            return open_writer(out, labels, resume=resume, extra=extra)
    with locked_output(out, folder=folder), _writer(out, model, resume, overwrite, open_rows) as writer:
        summary.add_earlier(writer.earlier)
        to_do = paths
        if writer.done:
            done = {same_file(p) for p in writer.done}
            listed = [same_file(p) for p in paths]
            to_do = [p for p, key in zip(paths, listed) if key not in done]
            summary.earlier_elsewhere = len(done - set(listed))
            if summary.earlier_elsewhere:
                summary.warnings.append(
                    f"{summary.earlier_elsewhere:,} of the {summary.earlier:,} rows from earlier runs in {out} are "
                    f"not files of this input: resumed on another folder or list? They are kept and counted")
        summary.skipped_resumed = len(paths) - len(to_do)
        if progress:
            progress(0, len(to_do))
        yield writer, to_do


def same_file(path: str) -> str:
    """A path with ``..``, ``.`` and symlinks resolved against the working folder: two spellings of one file match."""
    return os.path.realpath(path)


def _has_rows(out: str) -> bool:
    """A non-empty result file, or a result folder holding any file."""
    if os.path.isdir(out):
        return any(not entry.name.startswith(".") for entry in os.scandir(out))
    return os.path.exists(out) and os.path.getsize(out) > 0


def _writer(out, model: ScreeningModel, resume: bool, overwrite: bool, open_rows):
    """Open the result writer once the lock is held: refuse to replace rows or mix models, then record the model."""
    out = os.fspath(out)
    has_rows = _has_rows(out)
    if has_rows and not (resume or overwrite):
        raise OutputExistsError(f"{out} already exists: pass --resume to finish that run or --overwrite to replace it")
    resumed = resume and has_rows
    if resumed:
        check_resume(out, model)
    writer = open_rows(out, model.labels, resume=resume)
    write_record(out, model, resumed=resumed)
    return writer
