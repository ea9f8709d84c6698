"""``xscreen run`` as a function: discover, screen, stream rows to a file, summarise."""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Callable

from ._decode import IMAGE_EXTENSIONS
from ._discover import discover_inputs
from ._model import ScreeningModel, load_model
from ._pipeline import ScreeningResult, StageTimes, screen_batches
from ._writers import open_writer

FIRST_ERRORS = 5  # error reasons kept for the summary; every error is in the output file


class NoInputsError(ValueError):
    """The target holds nothing to screen."""


@dataclass
class RunSummary:
    """What a run did. Counts cover the files screened by this run; resumed ones are only counted."""

    total: int  # files found under the target
    out: str
    model: str
    backend: str
    ok: int = 0
    errors: int = 0
    out_of_scope: int = 0  # not screened: not a frontal chest film, by its DICOM header or its image
    skipped_resumed: int = 0  # already in the output file, not screened again
    per_class: dict[str, int] = field(default_factory=dict)  # predictions of this run, in label order
    flagged: int = 0  # needs review according to the model's threshold
    first_errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    first_out_of_scope: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored: dict[str, int] = field(default_factory=dict)  # folder entries not screened, by reason
    elapsed_s: float = 0.0
    decode_s: float = 0.0  # decoding + resizing, summed over the decoding threads
    inference_s: float = 0.0
    write_s: float = 0.0

    @property
    def screened(self) -> int:
        return self.ok + self.errors + self.out_of_scope

    @property
    def images_per_s(self) -> float:
        return self.screened / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready, with the derived figures."""
        return {**asdict(self), "screened": self.screened, "images_per_s": self.images_per_s}

    def add(self, results: list[ScreeningResult]) -> None:
        """Count one batch of results."""
        for r in results:
            if r.status == "ok":
                self.ok += 1
                self.per_class[r.prediction] += 1
                self.flagged += bool(r.flag)
            elif r.status == "out_of_scope":
                self.out_of_scope += 1
                if len(self.first_out_of_scope) < FIRST_ERRORS:
                    self.first_out_of_scope.append((r.path, r.error))
            else:
                self.errors += 1
                if len(self.first_errors) < FIRST_ERRORS:
                    self.first_errors.append((r.path, r.error))


def run_screening(
    target: str | os.PathLike,
    model: ScreeningModel | str | os.PathLike,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    workers: int | None = None,
    batch_size: int | None = None,
    follow_symlinks: bool = False,
    progress: Callable[[int, int], None] | None = None,
    heatmaps: bool = False,
    scope_check: bool = True,
) -> RunSummary:
    """Screen every image under ``target`` with ``model`` and write one row per file to ``out``.

    ``out`` is CSV or JSONL by its suffix and is replaced unless ``resume``, which keeps its rows
    and screens only the files not in it yet. ``progress(done, to_do)`` is called before the first
    batch and after each one. ``heatmaps`` and ``scope_check``: see :func:`screen_batches`. Raises
    NoInputsError when ``target`` holds no images, and the errors of :func:`load_model` and
    :func:`open_writer`.
    """
    if not isinstance(model, ScreeningModel):
        model = load_model(model)
    started = time.perf_counter()
    ignored: Counter[str] = Counter()
    paths = [str(p) for p in discover_inputs(
        target, follow_symlinks=follow_symlinks, on_ignored=lambda _path, reason: ignored.update([reason]),
    )]
    if not paths:
        raise NoInputsError(
            f"no images in {target}: xscreen reads {', '.join(IMAGE_EXTENSIONS)} files and DICOM "
            "files without an extension"
        )
    summary = RunSummary(total=len(paths), out=str(out), model=str(model.path), backend=model.backend,
                         per_class=dict.fromkeys(model.labels, 0), ignored=dict(ignored))
    times = StageTimes()
    with open_writer(out, model.labels, resume=resume) as writer:
        to_do = [p for p in paths if p not in writer.done] if writer.done else paths
        summary.skipped_resumed = len(paths) - len(to_do)
        if progress:
            progress(0, len(to_do))
        batches = screen_batches(to_do, model, workers=workers, batch_size=batch_size, times=times,
                                 heatmaps=heatmaps, scope_check=scope_check)
        with closing(batches):
            for batch in batches:
                write_started = time.perf_counter()
                writer.write(batch)
                summary.write_s += time.perf_counter() - write_started
                summary.add(batch)
                if progress:
                    progress(summary.screened, len(to_do))
    summary.decode_s, summary.inference_s = times.decode_s, times.inference_s
    summary.elapsed_s = time.perf_counter() - started
    return summary

