"""From screening results to heatmap PNGs and the report: during ``xscreen run``, or later from its file.

During a run, :class:`FilmRenderer` receives each batch of results (with their heatmaps) and draws
the films it is asked for at once, so memory holds a few thumbnails, never the heatmaps of a whole
run. For an existing result file, the flagged films are screened again through the same pipeline
to get their heatmaps (when the files are still there and the model is known), and a heatmap is
only shown when the film gets the prediction the file recorded.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..runtime import (
    DecodeError,
    RunSummary,
    ScreeningModel,
    ScreeningResult,
    decode_radiograph,
    default_model_path,
    load_model,
    run_screening,
)
from ..runtime._backends import usable_cores
from ..runtime._calibration import describe_calibration
from ..runtime._pipeline import screen_batches
from ..runtime._run_record import read_record
from ._html import ReportContent, ReportOptionError, check_report_target, write_report
from ._overlay import (
    HEATMAP_MAX_SIDE,
    THUMBNAIL_MAX_ASPECT,
    THUMBNAIL_MAX_SIDE,
    HeatmapNames,
    caption_for,
    encode_thumbnail,
    render_overlay,
    save_heatmap_png,
)
from ._results import ResultRow, ResultTable, read_results

MAX_REPORT_THUMBNAILS = 1000  # flagged films inlined in a report (about 8 KB each)
NO_HEATMAP_OUTPUT = ("this model has no heatmap output; re-export it with `xscreen export`, which adds one to a "
                     "classifier ending in global average pooling and one dense layer")


class NoHeatmapOutputError(ReportOptionError):
    """Heatmaps were asked of a model exported without its class-activation output."""


def require_heatmaps(model: ScreeningModel) -> None:
    """Raise :class:`NoHeatmapOutputError` (with what to do) unless ``model`` outputs heatmaps."""
    if not model.has_heatmaps:
        raise NoHeatmapOutputError(NO_HEATMAP_OUTPUT)


class FilmRenderer:
    """Draws heatmap overlays for batches of results: PNGs into a folder and/or thumbnails for a report.

    ``heatmap_dir``: write one PNG per flagged film (every screened film with ``every_film``);
    ``thumbnails``: keep a small JPEG of each flagged film (up to :data:`MAX_REPORT_THUMBNAILS`).
    ``expected``: path -> prediction the result file recorded; a film predicted otherwise now is
    not drawn. Films that cannot be read again are counted in ``unreadable``.

    Drawing a film costs about 25 inferences (decode at full size, PNG), so it runs on its own
    threads (Pillow releases the GIL) while screening goes on; at most a few films wait, and
    :meth:`close` (or leaving a ``with`` block) waits for the last ones.
    """

    def __init__(self, *, heatmap_dir: Path | None = None, root: Path | None = None, every_film: bool = False,
                 thumbnails: bool = False, expected: dict[str, str | None] | None = None,
                 workers: int | None = None) -> None:
        self.names = HeatmapNames(heatmap_dir, root) if heatmap_dir is not None else None
        self.every_film = every_film
        self.want_thumbnails = thumbnails
        self.expected = expected
        self.pngs: dict[str, Path] = {}
        self.thumbnails: dict[str, bytes] = {}
        self.unreadable = 0
        self.changed = 0
        self._thumbnails_asked = 0
        workers = workers or usable_cores()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="xscreen-draw")
        self._pending: deque[Future] = deque()
        self._max_pending = 2 * workers
        if heatmap_dir is not None:
            heatmap_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, batch: Iterable[ScreeningResult]) -> None:
        for result in batch:
            job = self._job(result)
            if job is None:
                continue
            self._pending.append(self._pool.submit(_draw_film, result, *job))
            while len(self._pending) > self._max_pending:
                self._collect(self._pending.popleft())

    def close(self) -> None:
        """Wait for the films still being drawn."""
        while self._pending:
            self._collect(self._pending.popleft())
        self._pool.shutdown()

    def __enter__(self) -> FilmRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _job(self, result: ScreeningResult) -> tuple[Path | None, bool] | None:
        """(PNG path or None, thumbnail wanted) for a result, decided here so names stay in input order."""
        if self.expected is not None and result.status == "error":
            self.unreadable += 1  # a film screened again that is no longer there or readable
            return None
        if result.heatmap is None:
            return None
        if self.expected is not None and self.expected.get(result.path) != result.prediction:
            self.changed += 1
            return None
        png = self.names.path_for(result.path) if self.names and (self.every_film or result.flag is True) else None
        thumbnail = self.want_thumbnails and result.flag is True and self._thumbnails_asked < MAX_REPORT_THUMBNAILS
        self._thumbnails_asked += thumbnail
        return (png, thumbnail) if png or thumbnail else None

    def _collect(self, future: Future) -> None:
        path, png, thumbnail = future.result()
        if png is None and thumbnail is None:
            self.unreadable += 1
        if png is not None:
            self.pngs[path] = png
        if thumbnail is not None:
            self.thumbnails[path] = thumbnail


def _draw_film(result: ScreeningResult, png: Path | None, thumbnail: bool) -> tuple[str, Path | None, bytes | None]:
    """Decode the film again at full size and draw what is asked; (path, PNG written, thumbnail JPEG)."""
    try:
        film = decode_radiograph(result.path)
    except (DecodeError, OSError):
        return result.path, None, None
    caption = caption_for(result.prediction, result.probabilities[result.prediction], result.flag)
    if png is not None:
        save_heatmap_png(render_overlay(film, result.heatmap, caption, HEATMAP_MAX_SIDE), png, result.path)
    jpeg = encode_thumbnail(render_overlay(film, result.heatmap, caption, THUMBNAIL_MAX_SIDE,
                                           THUMBNAIL_MAX_ASPECT)) if thumbnail else None
    return result.path, png, jpeg


def check_run_outputs(target: Path, out: Path, model: ScreeningModel, *, heatmap_dir: Path | None,
                      every_film: bool, report: Path | None) -> None:
    """Refuse heatmap and report options that contradict each other, that the model cannot serve
    (:class:`NoHeatmapOutputError`), or that would spoil a later run (ReportOptionError)."""
    if heatmap_dir is not None:
        require_heatmaps(model)
    if every_film and heatmap_dir is None:
        raise ReportOptionError("--heatmaps-all needs --heatmaps DIR: the folder to write them to")
    if heatmap_dir is not None:
        if heatmap_dir.exists() and not heatmap_dir.is_dir():
            raise ReportOptionError(f"--heatmaps {heatmap_dir} is a file: name a folder")
        root = Path(target).resolve()
        if root.is_dir() and (heatmap_dir.resolve() == root or root in heatmap_dir.resolve().parents):
            raise ReportOptionError(f"--heatmaps {heatmap_dir} is inside {target}: the next run would screen "
                                    "the heatmaps too; choose a folder outside it")
        check_writable_folder(heatmap_dir, "--heatmaps")
    if report is not None:
        if report.resolve() == out.resolve():
            raise ReportOptionError(f"--report {report} is the result file: name another file")
        check_report_target(report, overwrite=False)
        check_writable_folder(report.parent, "--report")
        if report.exists():
            try:
                with open(report, "ab"):  # appends nothing: only asks whether it may be replaced
                    pass
            except OSError as exc:
                raise ReportOptionError(f"--report {report}: cannot write it ({exc.strerror or exc})") from None


def check_writable_folder(folder: Path, option: str) -> None:
    """Refuse a destination folder that cannot be created or written in, before a film is screened,
    not after all of them: a file in the way, a read-only disk, no permission."""
    folder = folder.absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ReportOptionError(f"{option} {folder}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ReportOptionError(f"{option} {folder}: cannot write in {existing} ({exc.strerror or exc})") from None


def screen_and_report(target: Path, model: ScreeningModel, out: Path, *, heatmap_dir: Path | None = None,
                      every_film: bool = False, report: Path | None = None, report_notes: Iterable[str] = (),
                      **run_options) -> RunSummary:
    """:func:`run_screening`, plus heatmap PNGs drawn while screening and a report written after
    (``report_notes`` first among its notes).

    First :func:`check_run_outputs` (ReportOptionError before anything is screened; PNGs need a
    model with the cam output); a report from a model without it has no thumbnails and says why.
    The report replaces an earlier xscreen report, no other file. With neither output asked for,
    this is :func:`run_screening` and pays nothing for heatmaps.
    """
    check_run_outputs(target, out, model, heatmap_dir=heatmap_dir, every_film=every_film, report=report)
    drawing = model.has_heatmaps and (heatmap_dir is not None or report is not None)
    root = Path(target).resolve()
    with FilmRenderer(heatmap_dir=heatmap_dir, root=root if root.is_dir() else root.parent,
                      every_film=every_film, thumbnails=report is not None and drawing) as renderer:
        summary = run_screening(target, model, out, heatmaps=drawing, on_batch=renderer if drawing else None,
                                **run_options)
    if report is not None:
        notes = [*report_notes, *_heatmap_notes(model, renderer)]
        if summary.skipped_resumed and drawing:
            notes.append(f"{summary.skipped_resumed:,} films were screened by an earlier run (--resume): "
                         "no heatmaps for them here; xscreen report can draw them.")
        # No speed when no film was screened (every one out of scope or unreadable).
        speed = "–" if summary.images_per_s is None else f"{summary.images_per_s:,.1f}"
        run_facts = [("speed", f"{speed} images/s ({summary.elapsed_s:.1f} s) with "
                               f"{model.path.name} on {model.backend}")]
        write_report_for(read_results(out), report, model=model, renderer=renderer, notes=notes,
                         run_facts=run_facts, heatmap_dir=heatmap_dir,
                         thumbnail_choice=f"the first {MAX_REPORT_THUMBNAILS:,} in file order; xscreen report "
                                          f"{out.name} shows the {MAX_REPORT_THUMBNAILS:,} closest to the threshold")
    return summary


def report_from_results(results: Path, report: Path, model: ScreeningModel | str | os.PathLike | None = None, *,
                        overwrite: bool = False, **load_options) -> tuple[Path, ReportContent]:
    """``xscreen report``: a report for an existing result file, with heatmaps of its flagged films
    when ``model`` has them and the films can still be read; table-only otherwise, saying why.

    ``model``: a loaded model, a model file (opened with ``load_options``, see :func:`load_model`)
    or None: the model the result file's record names if it is still there and unchanged, else the
    bundled model if this install has one (the report says which).
    Raises ReportOptionError for an output it must not replace, ResultsFileError for a bad input,
    and the errors of :func:`load_model`.
    """
    check_report_target(report, overwrite)
    check_writable_folder(report.parent, "--out")  # before the flagged films are screened again
    table = read_results(results)
    notes = []
    if model is None:
        model, note = _known_model(results, load_options)
        notes += [note] if note else []
    elif not isinstance(model, ScreeningModel):
        model = load_model(model, **load_options)
    renderer = None
    if model is None:
        notes.append("No model given: the report shows the table only. Pass --model (the model that "
                     "wrote the results) for thumbnails with heatmaps of the flagged films.")
    elif tuple(model.labels) != table.labels:
        notes.append(f"The model's labels ({', '.join(model.labels)}) are not the result file's "
                     f"({', '.join(table.labels)}): it did not write these results, so no heatmaps are shown.")
        model = None
    elif model.has_heatmaps:
        flagged = most_uncertain_first([r for r in table.rows if r.flag is True and r.status == "ok"])
        flagged = flagged[:MAX_REPORT_THUMBNAILS]
        paths = [_readable_path(r.path, results) for r in flagged]
        expected = {str(path): r.prediction for path, r in zip(paths, flagged)}
        with FilmRenderer(thumbnails=True, expected=expected) as renderer:
            for batch in screen_batches(list(expected), model, heatmaps=True):
                renderer(batch)
        # The table keeps the paths as the file recorded them.
        renderer.thumbnails = {r.path: renderer.thumbnails[str(p)] for p, r in zip(paths, flagged)
                               if str(p) in renderer.thumbnails}
    return write_report_for(table, report, model=model, renderer=renderer,
                            notes=notes + _heatmap_notes(model, renderer) if model else notes)


def most_uncertain_first(rows: list[ResultRow]) -> list[ResultRow]:
    """Rows by distance to the review threshold (|margin|), closest first; rows without a margin last, in file order."""
    def distance(row: ResultRow) -> float:
        try:
            return abs(float(row.extra["margin"]))
        except (KeyError, TypeError, ValueError):
            return float("inf")

    return sorted(rows, key=distance)


def _known_model(results: Path, load_options: dict) -> tuple[ScreeningModel | None, str | None]:
    """The model that wrote ``results`` (its ``.meta.json`` record, same sha256), else the bundled one."""
    record = read_record(results) or {}
    recorded = record.get("model_path")
    if recorded and Path(recorded).is_file():
        model = load_model(recorded, **load_options)
        if model.sha256 == record.get("model_sha256"):
            return model, f"Heatmaps from {model.path.name}, the model that wrote the result file (its record says so)."
    try:
        model = load_model(default_model_path(), **load_options)
    except FileNotFoundError:
        return None, None  # an install without the bundled model
    return model, ("Heatmaps from the bundled model (no --model given, and the model that wrote the result file "
                   "is not at hand): shown only where it predicts what the result file records.")


def write_report_for(table: ResultTable, report: Path, *, model: ScreeningModel | None,
                     renderer: FilmRenderer | None, notes: list[str], run_facts: list | None = None,
                     heatmap_dir: Path | None = None,
                     thumbnail_choice: str | None = None) -> tuple[Path, ReportContent]:
    """Assemble the report's content from the table, the renderer's images and the model; write it."""
    index = {row.path: i for i, row in enumerate(table.rows)}
    content = ReportContent(notes=notes, run_facts=run_facts or [])
    if thumbnail_choice:
        content.thumbnail_choice = thumbnail_choice
    if renderer is not None:
        content.thumbnails = {index[p]: jpeg for p, jpeg in renderer.thumbnails.items() if p in index}
        if heatmap_dir is not None:
            content.links = {index[p]: Path(os.path.relpath(png, report.resolve().parent)).as_posix()
                             for p, png in renderer.pngs.items() if p in index and p in renderer.thumbnails}
    if model is not None:
        content.model_facts = model_facts(model)
        content.caveats = model.metadata.data_summary
    return write_report(table, content, report), content


def _heatmap_notes(model: ScreeningModel | None, renderer: FilmRenderer | None) -> list[str]:
    if model is not None and not model.has_heatmaps:
        return [f"No heatmaps: {NO_HEATMAP_OUTPUT}."]
    notes = []
    if renderer is not None and renderer.unreadable:
        notes.append(f"Flagged films that could not be read again: {renderer.unreadable:,} (no heatmap for them).")
    if renderer is not None and renderer.changed:
        notes.append(f"Films that got another prediction from this model than the result file records "
                     f"(another model, or changed files?): {renderer.changed:,} (no heatmap for them).")
    return notes


def _readable_path(path: str, results: Path) -> Path:
    """A recorded path as it is, or relative to the result file's folder when only that exists."""
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return candidate
    beside = results.parent / candidate
    return beside if beside.exists() else candidate


def model_facts(model: ScreeningModel) -> list[tuple[str, str]]:
    """The model card facts a reader of the report needs, as (name, value) pairs."""
    meta = model.metadata
    if meta.negative_label is not None and meta.threshold is not None:
        flag = f"review when 1 - p({meta.negative_label}) >= {meta.threshold:g}"
    else:
        flag = "none: the model defines no review threshold"
    facts = [
        ("file", f"{model.path.name} ({model.path.stat().st_size / 1e6:.2f} MB, {model.format}, "
                 f"run on {model.backend})"),
        ("file sha256", model.sha256),
        ("labels", ", ".join(model.labels)),
        ("screening flag", flag),
        ("input", f"{meta.input_size[0]}x{meta.input_size[1]} grey, {meta.input_dtype}"),
        ("preprocessing", meta.preprocessing),
        ("heatmaps", "class-activation maps of the predicted class" if model.has_heatmaps else NO_HEATMAP_OUTPUT),
    ]
    optional = [("model version", meta.model_version), ("exported", meta.exported_at),
                ("exported by", meta.xscreen_version and f"xscreen {meta.xscreen_version}"),
                ("sha256 of the Keras model it was exported from", meta.source_sha256),
                ("site calibration", meta.calibration and describe_calibration(meta.calibration))]
    return facts + [(k, str(v)) for k, v in optional if v]
