"""Screening many files: decoding on a thread pool, overlapped with inference, in input order.

The input is cut into batches. Up to ``PREFETCH_BATCHES`` batches are being decoded at once,
each straight into its own pre-allocated pixel buffer (Pillow releases the GIL while it decodes
and resizes, so the threads really run in parallel). The calling thread runs the model on the
oldest batch while the pool decodes the next ones, then hands that buffer to the next batch.
Memory is therefore bounded by ``PREFETCH_BATCHES`` buffers whatever the number of files, the
full-size pixels being decoded at once by the process's decode budget (``_decode.DECODE_BUDGET``)
whatever the workers and batch size, and every input yields exactly one :class:`ScreeningResult`, in
input order.

The scope check (``_scope.py``) rides along at no extra pass: DICOM headers are judged while
decoding, the image score comes out of the same model call as the probabilities, and only films
out of scope are run a second time (as their negative, to name inverted films).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from ._backends import usable_cores
from ._decode import DecodeError, OutOfScopeError, decode_radiograph
from ._model import ModelOutputs, ScreeningModel
from ._scope import image_reasons

DEFAULT_BATCH_SIZE = 4  # as fast as 16 on 2 cores, and half the peak memory for float models (benchmarks/)
PREFETCH_BATCHES = 3  # one in inference, two decoding: enough to keep both busy


@dataclass
class ScreeningResult:
    """One input file's outcome.

    ``status`` is ``"ok"``, ``"error"`` (not screened) or ``"out_of_scope"`` (not something the model
    can judge: no prediction, no flag); ``error`` says why for the last two.
    """

    path: str
    status: str
    prediction: str | None = None
    probabilities: dict[str, float] | None = None
    flag: bool | None = None  # needs review, from the model's threshold; None: the model has none
    error: str | None = None
    margin: float | None = None  # P(abnormal) - threshold: the flag is margin >= 0; None with no threshold
    scope_score: float | None = None  # distance from the training films; None: not scored
    heatmap: np.ndarray | None = None  # (h, w) float32 CAM of the predicted class, when asked for (not written)
    review_reason: str | None = None  # the comparison behind ``flag``, e.g. "P(not healthy) 0.970 >= threshold 0.941"


@dataclass
class StageTimes:
    """Seconds spent per stage; decoding is summed over the worker threads."""

    decode_s: float = 0.0
    inference_s: float = 0.0


def screen_files(
    paths: Iterable[str | os.PathLike],
    model: ScreeningModel,
    *,
    workers: int | None = None,
    batch_size: int | None = None,
    heatmaps: bool = False,
    scope_check: bool = True,
) -> Iterator[ScreeningResult]:
    """Screen ``paths`` with ``model``, yielding one result per path in input order.

    ``workers``: decoding threads (None: one per core; 0: decode in the calling thread).
    ``batch_size``: images per batch (None: :data:`DEFAULT_BATCH_SIZE`). ``paths`` is consumed
    lazily, a few batches ahead of the results. ``heatmaps``, ``scope_check``: see :func:`screen_batches`.
    """
    # closing(): a caller that stops early shuts the decoding threads down at once, not at garbage collection.
    with closing(screen_batches(paths, model, workers=workers, batch_size=batch_size,
                                heatmaps=heatmaps, scope_check=scope_check)) as batches:
        for batch in batches:
            yield from batch


def screen_batches(
    paths: Iterable[str | os.PathLike],
    model: ScreeningModel,
    *,
    workers: int | None = None,
    batch_size: int | None = None,
    times: StageTimes | None = None,
    heatmaps: bool = False,
    scope_check: bool = True,
) -> Iterator[list[ScreeningResult]]:
    """Like :func:`screen_files`, one list per batch; adds the time per stage to ``times``.

    ``heatmaps``: fill ``ScreeningResult.heatmap`` (models with a cam output). ``scope_check``: name
    out-of-scope files (DICOM headers; the image score of models with a scope output) instead of
    screening them.
    """
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    workers = usable_cores() if workers is None else workers
    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    times = times if times is not None else StageTimes()
    check_image = scope_check and model.has_scope
    height, width = model.input_size
    preprocessing = model.metadata.preprocessing
    chunks = _chunks(paths, batch_size)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="xscreen-decode") if workers else None
    pending: deque[tuple[list[Path], np.ndarray, list]] = deque()

    def start(buffer: np.ndarray) -> None:
        """Begin decoding the next batch into ``buffer``, if there is one."""
        chunk = next(chunks, None)
        if chunk is None:
            return
        if pool is None:
            outcomes = [_decode_into(buffer, i, path, preprocessing, scope_check) for i, path in enumerate(chunk)]
        else:
            outcomes = [pool.submit(_decode_into, buffer, i, path, preprocessing, scope_check)
                        for i, path in enumerate(chunk)]
        pending.append((chunk, buffer, outcomes))

    try:
        for _ in range(PREFETCH_BATCHES):
            start(np.empty((batch_size, height, width, 1), dtype=np.uint8))
        while pending:
            chunk, buffer, outcomes = pending.popleft()
            failures, colour = [], np.zeros(len(chunk), np.float32)
            for i, outcome in enumerate(outcomes):
                failure, seconds, colour[i] = outcome.result() if isinstance(outcome, Future) else outcome
                failures.append(failure)
                times.decode_s += seconds
            outputs, reasons = None, [None] * len(chunk)
            if any(failure is None for failure in failures):
                started = time.perf_counter()
                # Slots of failed files hold stale pixels; their outputs are discarded below.
                pixels = buffer[: len(chunk)]
                if (heatmaps and model.has_heatmaps) or check_image:
                    outputs = model.predict_outputs(pixels)
                else:
                    outputs = ModelOutputs(model.predict(pixels), None, None)
                if check_image:
                    screened = np.array([failure is None for failure in failures])
                    reasons = image_reasons(model, pixels, outputs, screened, colour)
                times.inference_s += time.perf_counter() - started
            start(buffer)  # the buffer is free again: decode the next batch into it
            yield _results(chunk, failures, reasons, outputs, model, heatmaps)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _chunks(paths: Iterable, size: int) -> Iterator[list[Path]]:
    it = iter(paths)
    while chunk := [Path(p) for p in islice(it, size)]:
        yield chunk


def _decode_into(buffer: np.ndarray, slot: int, path: Path, preprocessing: str,
                 scope_check: bool) -> tuple[tuple[str, str] | None, float, float]:
    """Decode ``path`` into ``buffer[slot]``: ((status, reason) or None when decoded, seconds, colour).

    colour: the image's mean saturation before the grey conversion, for the scope check (0 when not decoded).
    """
    started = time.perf_counter()
    facts = {"colour": 0.0}
    try:
        buffer[slot, :, :, 0] = decode_radiograph(path, buffer.shape[1:3], preprocessing, scope_check=scope_check,
                                                  facts=facts)
        failure = None
    except OutOfScopeError as exc:
        failure = ("out_of_scope", str(exc))
    except DecodeError as exc:
        failure = ("error", str(exc))
    except Exception as exc:  # a batch must go on: any failure is this file's row, not the run's end
        failure = ("error", f"unexpected {type(exc).__name__}: {exc}")
    return failure, time.perf_counter() - started, facts["colour"]


def _results(chunk: list[Path], failures: list[tuple[str, str] | None], reasons: list[str | None],
             outputs: ModelOutputs | None, model: ScreeningModel, heatmaps: bool) -> list[ScreeningResult]:
    labels = model.labels
    metadata = model.metadata
    results = []
    for i, (path, failure, reason) in enumerate(zip(chunk, failures, reasons)):
        if failure is not None:
            results.append(ScreeningResult(str(path), failure[0], error=failure[1]))
            continue
        score = None if outputs.scope_score is None else float(outputs.scope_score[i])
        if reason is not None:
            results.append(ScreeningResult(str(path), "out_of_scope", error=reason, scope_score=score))
            continue
        row = outputs.probabilities[i]
        predicted = int(row.argmax())
        results.append(ScreeningResult(
            str(path), "ok", labels[predicted], dict(zip(labels, row.tolist())), metadata.needs_review(row),
            margin=metadata.review_margin(row), review_reason=metadata.review_reason(row), scope_score=score,
            heatmap=outputs.cam[i, :, :, predicted].copy() if heatmaps and outputs.cam is not None else None,
        ))
    return results
