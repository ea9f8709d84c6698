"""Screening many files: decoding on a thread pool, overlapped with inference, in input order.

The input is cut into batches. Up to ``PREFETCH_BATCHES`` batches are being decoded at once,
each straight into its own pre-allocated pixel buffer (Pillow releases the GIL while it decodes
and resizes, so the threads really run in parallel). The calling thread runs the model on the
oldest batch while the pool decodes the next ones, then hands that buffer to the next batch.
Memory is therefore bounded by ``PREFETCH_BATCHES`` buffers whatever the number of files, and
every input yields exactly one :class:`ScreeningResult`, in input order.
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
from ._decode import DecodeError, decode_radiograph
from ._model import ScreeningModel

DEFAULT_BATCH_SIZE = 4  # as fast as 16 on 2 cores, and half the peak memory for float models (benchmarks/)
PREFETCH_BATCHES = 3  # one in inference, two decoding: enough to keep both busy


@dataclass
class ScreeningResult:
    """One input file's outcome; ``status`` is ``"ok"`` or ``"error"`` (then ``error`` says why)."""

    path: str
    status: str
    prediction: str | None = None
    probabilities: dict[str, float] | None = None
    flag: bool | None = None  # needs review, from the model's threshold; None: the model has none
    error: str | None = None
    margin: float | None = None  # P(abnormal) - threshold: the flag is margin >= 0; None with no threshold


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
) -> Iterator[ScreeningResult]:
    """Screen ``paths`` with ``model``, yielding one result per path in input order.

    ``workers``: decoding threads (None: one per core; 0: decode in the calling thread).
    ``batch_size``: images per batch (None: :data:`DEFAULT_BATCH_SIZE`). ``paths`` is consumed
    lazily, a few batches ahead of the results.
    """
    # closing(): a caller that stops early shuts the decoding threads down at once, not at garbage collection.
    with closing(screen_batches(paths, model, workers=workers, batch_size=batch_size)) as batches:
        for batch in batches:
            yield from batch


def screen_batches(
    paths: Iterable[str | os.PathLike],
    model: ScreeningModel,
    *,
    workers: int | None = None,
    batch_size: int | None = None,
    times: StageTimes | None = None,
) -> Iterator[list[ScreeningResult]]:
    """Like :func:`screen_files`, one list per batch; adds the time per stage to ``times``."""
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    workers = usable_cores() if workers is None else workers
    if batch_size < 1 or workers < 0:
        raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    times = times if times is not None else StageTimes()
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
            outcomes = [_decode_into(buffer, i, path, preprocessing) for i, path in enumerate(chunk)]
        else:
            outcomes = [pool.submit(_decode_into, buffer, i, path, preprocessing) for i, path in enumerate(chunk)]
        pending.append((chunk, buffer, outcomes))

    try:
        for _ in range(PREFETCH_BATCHES):
            start(np.empty((batch_size, height, width, 1), dtype=np.uint8))
        while pending:
            chunk, buffer, outcomes = pending.popleft()
            errors = []
            for outcome in outcomes:
                error, seconds = outcome.result() if isinstance(outcome, Future) else outcome
                errors.append(error)
                times.decode_s += seconds
            probabilities = None
            if any(error is None for error in errors):
                started = time.perf_counter()
                # Slots of failed files hold stale pixels; their outputs are discarded below.
                probabilities = model.predict(buffer[: len(chunk)])
                times.inference_s += time.perf_counter() - started
            start(buffer)  # the buffer is free again: decode the next batch into it
            yield _results(chunk, errors, probabilities, model)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _chunks(paths: Iterable, size: int) -> Iterator[list[Path]]:
    it = iter(paths)
    while chunk := [Path(p) for p in islice(it, size)]:
        yield chunk


def _decode_into(buffer: np.ndarray, slot: int, path: Path, preprocessing: str) -> tuple[str | None, float]:
    """Decode ``path`` into ``buffer[slot]``; return (error reason or None, seconds spent)."""
    started = time.perf_counter()
    try:
        buffer[slot, :, :, 0] = decode_radiograph(path, buffer.shape[1:3], preprocessing)
        error = None
    except DecodeError as exc:
        error = str(exc)
    except Exception as exc:  # a batch must go on: any failure is this file's row, not the run's end
        error = f"unexpected {type(exc).__name__}: {exc}"
    return error, time.perf_counter() - started


def _results(chunk: list[Path], errors: list[str | None], probabilities: np.ndarray | None,
             model: ScreeningModel) -> list[ScreeningResult]:
    labels = model.labels
    meta = model.metadata
    results = []
    for i, (path, error) in enumerate(zip(chunk, errors)):
        if error is not None:
            results.append(ScreeningResult(str(path), "error", error=error))
            continue
        row = probabilities[i]
        results.append(ScreeningResult(
            str(path), "ok", labels[int(row.argmax())], dict(zip(labels, row.tolist())), meta.needs_review(row),
            margin=meta.review_margin(row),
        ))
    return results
