"""``xscreen run --engine ray``: the same screening pipeline, scheduled over a cluster by Ray Data.

Ray owns the scheduling, xscreen owns the model. The driver (this process) discovers the files
exactly as the local engine does and hands the list to ``ray.data.from_items``; ``map_batches``
feeds a pool of :class:`ScreeningActor` (one model per actor, loaded once in ``__init__``), and each
actor screens its batch of paths with the runtime's own pipeline (:func:`screen_batches`: decoding
threads overlapped with inference), so a file gets the same row on Ray as locally.

The model file travels through Ray's object store (it is a few MB), so workers need not see it; the inputs
must be readable by every node under the same path (shared storage). Output: a ``.parquet`` folder
is written by the workers themselves (``write_parquet``, one file per block, the CSV's columns); a
``.csv`` or ``.jsonl`` file is gathered on the driver, batch by batch, through the local engine's
writers. Rows come in completion order, not input order.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from ..runtime import ResumeError, ScreeningModel, ScreeningResult, load_model, result_columns
from ..runtime._pipeline import screen_batches
from ..runtime._run import OutputExistsError, RunSummary, open_run_output, start_run

RAY_BATCH_SIZE = 64  # paths per actor call: Ray's cost per call spread over many files (benchmarks/ray_throughput.py)
PARQUET_SUFFIX = ".parquet"
RAY_OUTPUT_SUFFIXES = (".csv", ".jsonl", PARQUET_SUFFIX)
INSTALL_HINT = "pip install 'xscreen[ray]'"


class MissingRayError(ImportError):
    """Ray is not installed; the message holds the pip command."""


class RayEngineError(RuntimeError):
    """Ray could not be reached, or failed outside any one file; the message says what happened."""


def import_ray():
    """The ``ray`` module with Ray Data, or MissingRayError with the pip command."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]: a bare ray lacks pyarrow)
    except ImportError as exc:
        raise MissingRayError(f"--engine ray needs Ray Data ({exc}): {INSTALL_HINT}") from None
    return ray


class ScreeningActor:
    """A Ray Data callable class: loads the model once, screens batches of paths with the runtime's pipeline.

    ``threads`` is both the model's inference threads and the decoding threads, matching the CPUs
    Ray reserves for the actor.
    """

    def __init__(self, model_file: bytes, suffix: str, labels: Sequence[str], threads: int,
                 backend: str | None, batch_size: int | None, scope_check: bool = True) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="xscreen-model-")
        path = Path(self._folder.name) / f"model{suffix}"
        path.write_bytes(model_file)
        self.model = load_model(path, labels=labels, threads=threads, backend=backend)
        self.threads = threads
        self.batch_size = batch_size
        self.scope_check = scope_check

    def __call__(self, batch: dict[str, np.ndarray]):
        """``{"path": array of str}`` -> a pyarrow Table of result rows, one per path."""
        results = [result for chunk in screen_batches(batch["path"].tolist(), self.model, workers=self.threads,
                                                      batch_size=self.batch_size,
                                                      scope_check=self.scope_check)
                   for result in chunk]
        return results_table(results, self.model.labels)


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


_ARROW_TYPES = {"flag": "bool_", "margin": "float64", "scope_score": "float64"}  # else text; prob_*: float64


def _schema(labels: Sequence[str]):
    import pyarrow as pa

    probabilities = {f"prob_{label}" for label in labels}
    return pa.schema([
        (column, pa.float64() if column in probabilities else getattr(pa, _ARROW_TYPES.get(column, "string"))())
        for column in result_columns(labels)
    ])


def run_screening_on_ray(
    target: str | os.PathLike,
    model: ScreeningModel,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int | None = None,
    backend: str | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    overwrite: bool = True,
    follow_symlinks: bool = False,
    progress: Callable[[int, int], None] | None = None,
    scope_check: bool = True,
) -> RunSummary:
    """Screen every image under ``target`` on Ray and write one row per file to ``out``.

    Like :func:`xscreen.runtime.run_screening`, with ``out`` also a ``.parquet`` folder. ``model`` is
    loaded here for its labels; every actor loads the same file (``backend``: the runtime to force).
    ``address``: a running cluster (None: ``RAY_ADDRESS``, else a local instance for this run; ignored
    when this process is already connected to Ray).
    ``actors``: size of the actor pool (None: the cluster's CPUs / ``threads``); ``threads``: CPUs,
    decoding threads and inference threads per actor (None: 1). ``batch_size``: images per inference
    batch inside an actor. ``resume`` keeps the rows already in ``out`` and screens only the rest;
    ``scope_check``: as in :func:`screen_batches`. ``overwrite=False`` refuses to replace an ``out``
    that has rows (OutputExistsError).
    Raises MissingRayError, RayEngineError, and what ``run_screening`` raises.
    """
    ray = import_ray()
    if actors is not None and actors < 1:
        raise RayEngineError(f"--engine ray needs at least one actor, got --workers {actors}")
    out = Path(out)
    started = time.perf_counter()
    paths, summary = start_run(target, model, out, follow_symlinks=follow_symlinks)
    threads = threads or 1
    started_ray = _connect(ray, address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        actors = actors or max(1, cpus // threads)
        if actors * threads > cpus:  # Ray would wait for CPUs that never come
            raise RayEngineError(f"{actors} actors x {threads} CPUs (--workers x --threads) need {actors * threads} "
                                 f"CPUs; the Ray cluster has {cpus}")
        summary.backend = f"{model.backend}, Ray: {actors} actor{'s' * (actors > 1)} x {threads} CPU"
        screen = _Screen(ray, model, actors=actors, threads=threads, backend=backend, batch_size=batch_size,
                         scope_check=scope_check)
        if out.suffix.lower() == PARQUET_SUFFIX:
            _to_parquet(screen, paths, out, summary, resume=resume, overwrite=overwrite, progress=progress)
        else:
            _to_file(screen, model, paths, out, summary, resume=resume, overwrite=overwrite, progress=progress)
    except ray.exceptions.RayError as exc:
        raise RayEngineError(f"Ray failed: {_first_line(exc)}") from None
    finally:
        if started_ray:
            ray.shutdown()
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _connect(ray, address: str | None) -> bool:
    """Join ``address`` (or start a local instance) unless already connected; True if this call connected."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001  (a node that times out starting raises a bare Exception)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise RayEngineError(f"could not start or reach {where}: {_first_line(exc)}") from None
    return True


class _Screen:
    """The Ray Data plan: paths -> actor pool -> result rows, for one model and pool size."""

    def __init__(self, ray, model: ScreeningModel, *, actors: int, threads: int, backend: str | None,
                 batch_size: int | None, scope_check: bool) -> None:
        self._ray = ray
        self.labels = model.labels
        self._actor_args = dict(model_file=model.path.read_bytes(), suffix=model.path.suffix,
                                labels=model.labels, threads=threads, backend=backend, batch_size=batch_size,
                                scope_check=scope_check)
        self._actors = actors
        self._threads = threads

    def rows(self, paths: list[str], *, ray_progress: bool):
        """A lazy Dataset of result rows for ``paths``."""
        context = self._ray.data.DataContext.get_current()
        context.enable_progress_bars = ray_progress
        logging.getLogger("ray.data").setLevel(logging.INFO if ray_progress else logging.WARNING)
        # At least one block per actor, so that a short list still keeps every actor busy.
        blocks = min(len(paths), max(self._actors, math.ceil(len(paths) / RAY_BATCH_SIZE)))
        items = self._ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
        return items.map_batches(ScreeningActor, fn_constructor_kwargs=self._actor_args, batch_size=RAY_BATCH_SIZE,
                                 batch_format="numpy", num_cpus=self._threads,
                                 compute=self._ray.data.ActorPoolStrategy(size=self._actors))

    def results(self, table) -> list[ScreeningResult]:
        return results_from_table(table, self.labels)


def _to_file(screen: _Screen, model: ScreeningModel, paths: list[str], out: Path, summary: RunSummary, *,
             resume: bool, overwrite: bool, progress: Callable[[int, int], None] | None) -> None:
    """Gather the rows on the driver into a CSV or JSONL file through the local engine's lock and writer."""
    with open_run_output(out, model, paths, summary, resume=resume, overwrite=overwrite,
                         progress=progress) as (writer, to_do):
        if not to_do:
            return
        for table in screen.rows(to_do, ray_progress=False).iter_batches(batch_size=None, batch_format="pyarrow"):
            write_started = time.perf_counter()
            results = screen.results(table)
            writer.write(results)
            summary.write_s += time.perf_counter() - write_started
            summary.add(results)
            if progress:
                progress(summary.screened, len(to_do))


def _to_parquet(screen: _Screen, paths: list[str], out: Path, summary: RunSummary, *, resume: bool,
                overwrite: bool, progress: Callable[[int, int], None] | None) -> None:
    """Have the workers write the rows into the ``out`` folder as Parquet files; count what they wrote."""
    import pyarrow.parquet as pq
    from ray.data import SaveMode

    if not (resume or overwrite) and any(out.glob(f"*{PARQUET_SUFFIX}")):
        raise OutputExistsError(f"{out} already exists: pass --resume to finish that run or --overwrite to replace it")
    done = _parquet_paths(out, screen.labels) if resume else set()
    to_do = [p for p in paths if p not in done]
    summary.skipped_resumed = len(paths) - len(to_do)
    if progress:
        progress(0, len(to_do))
    if not to_do:
        return
    before = set(out.glob(f"*{PARQUET_SUFFIX}")) if resume else set()
    write_started = time.perf_counter()
    # Writing a block is light I/O; reserving no CPU lets it run while the actors hold every CPU, so rows
    # stream to disk instead of piling up in the object store until the last actor is done.
    screen.rows(to_do, ray_progress=progress is not None).write_parquet(
        str(out), mode=SaveMode.APPEND if resume else SaveMode.OVERWRITE, ray_remote_args={"num_cpus": 0})
    summary.write_s += time.perf_counter() - write_started
    for written in sorted(set(out.glob(f"*{PARQUET_SUFFIX}")) - before):
        summary.add(screen.results(pq.read_table(written)))
    if progress:
        progress(summary.screened, len(to_do))


def _parquet_paths(folder: Path, labels: Sequence[str]) -> set[str]:
    """The paths already screened in a Parquet result folder; ResumeError when it is not one of ours."""
    import pyarrow.parquet as pq

    if not folder.exists():
        return set()
    if not folder.is_dir():
        raise ResumeError(f"cannot resume {folder}: it is a file, not a Parquet folder written by xscreen run")
    expected = result_columns(labels)
    done: set[str] = set()
    for part in sorted(folder.glob(f"*{PARQUET_SUFFIX}")):
        try:
            columns = pq.read_schema(part).names
            part_paths = pq.read_table(part, columns=["path"]).column("path").to_pylist() \
                if columns == expected else []
        except (OSError, ValueError) as exc:
            raise ResumeError(
                f"cannot resume {folder}: {part.name} is not a readable Parquet file (torn by a killed run?): "
                f"delete that file and resume, its images are screened again ({_first_line(exc)})"
            ) from None
        if columns != expected:
            raise ResumeError(
                f"cannot resume {folder}: {part.name} has columns ({','.join(columns)}), this model's are "
                f"({','.join(expected)}). Choose another output or pass --overwrite"
            )
        done.update(part_paths)
    return done


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
