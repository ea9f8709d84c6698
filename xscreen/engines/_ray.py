"""``xscreen run --engine ray``: the same screening pipeline, scheduled over a cluster by Ray Data.

Ray owns the scheduling, xscreen owns the model. The driver (this process) discovers the files
exactly as the local engine does and hands the list to ``ray.data.from_items``; ``map_batches``
feeds a pool of :class:`ScreeningActor` (one model per actor, loaded once in ``__init__``), and each
actor screens its batch of paths with the runtime's own pipeline (:func:`screen_batches`: decoding
threads overlapped with inference), so a file gets the same row on Ray as locally.

The model file travels through Ray's object store (it is a few MB), so workers need not see it; the inputs
must be readable by every node under the same path (shared storage). Every path leaves this process
absolute (a worker's working folder is the cluster's, not ours); the rows keep the user's spelling.
Output: a ``.parquet`` folder is written by the workers themselves (``write_parquet``, one file per
block, the CSV's columns); a ``.csv`` or ``.jsonl`` file is gathered on the driver, batch by batch,
through the local engine's writers. Either way the output is opened by the local engine's
``open_run_output``: the same lock, run record and model check on ``--resume``. Rows come in
completion order, not input order.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..runtime import ScreeningModel, ScreeningResult, load_model
from ..runtime._pipeline import screen_batches
from ..runtime._run import RunSummary, open_run_output, start_run
from ._parquet import PARQUET_SUFFIX, ParquetRows, _first_line, results_from_table, results_table

RAY_BATCH_SIZE = 64  # paths per actor call: Ray's cost per call spread over many files (benchmarks/ray_throughput.py)
RAY_OUTPUT_SUFFIXES = (".csv", ".jsonl", PARQUET_SUFFIX)
CONNECT_TIMEOUT_S = 30.0  # joining a cluster: Ray itself retries for minutes when nothing answers
INSTALL_HINT = "pip install 'xscreen[ray]'"
# Ray sends its token to an explicit address only when told to (`auto` finds the local one by itself).
AUTH_HINT = ("if the cluster uses Ray's token authentication (InvalidAuthToken in Ray's lines above), set "
             "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the head node's token (`ray get-auth-token` there), "
             "or RAY_AUTH_TOKEN_PATH to a file holding it")
TOKEN_HINT = ("check that RAY_AUTH_TOKEN (or the file in RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token) holds the head "
              "node's token (`ray get-auth-token` there)")
ADDRESS_HINT = ("check the address (`ray start --head` prints it; `auto` joins the one started on this machine), "
                "that the head node runs and that its port is open from here")


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
        """``{"path": as the user wrote it, "file": absolute}`` -> a pyarrow Table of result rows, one per path."""
        named = batch["path"].tolist()
        files = batch["file"].tolist() if "file" in batch else named
        screened = (result for chunk in screen_batches(files, self.model, workers=self.threads,
                                                       batch_size=self.batch_size, scope_check=self.scope_check)
                    for result in chunk)
        results = [replace(result, path=name) for name, result in zip(named, screened)]
        return results_table(results, self.model.labels)


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
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    notice: Callable[[str], None] | None = None,
) -> RunSummary:
    """Screen every image under ``target`` on Ray and write one row per file to ``out``.

    Like :func:`xscreen.runtime.run_screening`, with ``out`` also a ``.parquet`` folder. ``model`` is
    loaded here for its labels; every actor loads the same file (``backend``: the runtime to force).
    ``address``: a running cluster, given up on after ``connect_timeout_s`` (None: ``RAY_ADDRESS``, else
    a new local instance for this run, never a cluster Ray recorded earlier; ignored when this process
    is already connected to Ray). ``notice(line)`` hears what Ray is connecting to.
    ``actors``: size of the actor pool (None: the cluster's CPUs / ``threads``); ``threads``: CPUs,
    decoding threads and inference threads per actor (None: 1). ``batch_size``: images per inference
    batch inside an actor. ``resume`` keeps the rows already in ``out`` and screens only the rest;
    ``scope_check``: as in :func:`screen_batches`. ``overwrite=False`` refuses to replace an ``out``
    that has rows (OutputExistsError).
    Raises MissingRayError, RayEngineError (also when fewer rows came back than files were sent), and
    what ``run_screening`` raises. SIGTERM ends the run like Ctrl-C (KeyboardInterrupt), Ray shut down.
    """
    ray = import_ray()
    if actors is not None and actors < 1:
        raise RayEngineError(f"--engine ray needs at least one actor, got --workers {actors}")
    started = time.perf_counter()
    paths, summary = start_run(target, model, out, follow_symlinks=follow_symlinks)
    out = Path(os.path.abspath(out))  # the workers write Parquet parts in their own working folder otherwise
    threads = threads or 1
    started_ray = _connect(ray, address, timeout_s=connect_timeout_s, notice=notice)
    try:
        with _sigterm_as_interrupt():
            cpus = int(ray.cluster_resources().get("CPU", 0))
            actors = actors or max(1, cpus // threads)
            if actors * threads > cpus:  # Ray would wait for CPUs that never come
                raise RayEngineError(f"{actors} actors x {threads} CPUs (--workers x --threads) need "
                                     f"{actors * threads} CPUs; the Ray cluster has {cpus}")
            summary.backend = f"{model.backend}, Ray: {actors} actor{'s' * (actors > 1)} x {threads} CPU"
            screen = _Screen(ray, model, actors=actors, threads=threads, backend=backend, batch_size=batch_size,
                             scope_check=scope_check)
            write = _to_parquet if out.suffix.lower() == PARQUET_SUFFIX else _to_file
            write(screen, model, paths, out, summary, resume=resume, overwrite=overwrite, progress=progress)
            summary.elapsed_s = time.perf_counter() - started  # the rows are written: Ray's shutdown is not the run
    except ray.exceptions.RayError as exc:
        raise RayEngineError(f"Ray failed: {_first_line(exc).rstrip('.')}. The rows written so far are in "
                             f"{summary.out}: finish with the same command and --resume") from None
    finally:
        if started_ray:
            ray.shutdown()
    return summary


def _connect(ray, address: str | None, *, timeout_s: float, notice: Callable[[str], None] | None) -> bool:
    """Join ``address`` or ``RAY_ADDRESS`` within ``timeout_s``, else start a local instance, unless already
    connected; True if this call connected."""
    if ray.is_initialized():
        return False
    notice = notice or (lambda _line: None)
    _DropNoise.install()
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(include_dashboard=False, logging_level=logging.WARNING)
    if address is None:
        notice("Ray: starting a local instance for this run")
        try:
            ray.init(address="local", **options)  # "local": not the cluster Ray recorded in /tmp/ray earlier
        except Exception as exc:  # noqa: BLE001  (a node that times out starting raises a bare Exception)
            raise RayEngineError(f"could not start a local Ray instance: {_first_line(exc)}") from None
        return True
    notice(f"Ray: joining the cluster at {address} (giving up after {timeout_s:g} s; --connect-timeout)")
    refused = _nothing_listens(address, timeout_s)
    if refused:
        raise RayEngineError(f"could not join the Ray cluster at {address}: {refused}; {ADDRESS_HINT}")
    failure = _init_within(ray, address, timeout_s, options)
    if failure is None:
        return True
    hint = ADDRESS_HINT
    if failure.startswith("no answer") or "auth" in failure.lower():  # Ray retries a refused token in silence
        hint = AUTH_HINT if os.environ.get("RAY_AUTH_MODE", "").lower() != "token" else TOKEN_HINT
    raise RayEngineError(f"could not join the Ray cluster at {address}: {failure}; {hint}")


def _nothing_listens(address: str, timeout_s: float) -> str | None:
    """Why nothing answers at a ``HOST:PORT`` address (None: a connection opened, or not that form of address)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None  # auto, ray://...: Ray finds or reaches the cluster itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"nothing answers there ({exc.strerror or exc})"
    return None


def _init_within(ray, address: str, timeout_s: float, options: dict) -> str | None:
    """``ray.init(address)`` in a thread, given ``timeout_s``: None once connected, else why not."""
    failure: list[str] = []

    def init() -> None:
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # noqa: BLE001  (Ray raises ConnectionError, RuntimeError, bare Exception)
            failure.append(_first_line(exc))

    worker = threading.Thread(target=init, name="xscreen-ray-connect", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return f"no answer within {timeout_s:g} s"
    return failure[0] if failure else None


class _DropNoise(logging.Filter):
    """Drops what Ray logs on every run that asks nothing of the user (a filter on the logger that logs it)."""

    NOISE = {
        # Token authentication is on by default for a local instance: Ray says so at each start.
        "ray._private.authentication.authentication_token_setup": "Token authentication is enabled",
        # Joining in a thread (for the time-out) keeps Ray's SIGTERM handler out; ours is installed after.
        "ray._private.worker": "SIGTERM handler is not set",
        # CSV/JSONL output: xscreen's own progress line replaces Ray's bars, on purpose.
        "ray.data._internal.progress": "Progress bars disabled",
    }

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)

    @classmethod
    def install(cls) -> None:
        for name, prefix in cls.NOISE.items():
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls(prefix))


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, so the run ends as after Ctrl-C (rows kept, Ray shut down)
    instead of in Ray's handler and a native stack trace."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        """A lazy Dataset of result rows for ``paths``, each sent with its absolute form to open."""
        context = self._ray.data.DataContext.get_current()
        context.enable_progress_bars = ray_progress
        logging.getLogger("ray.data").setLevel(logging.INFO if ray_progress else logging.WARNING)
        # At least one block per actor, so that a short list still keeps every actor busy.
        blocks = min(len(paths), max(self._actors, math.ceil(len(paths) / RAY_BATCH_SIZE)))
        here = os.getcwd()
        items = self._ray.data.from_items([{"path": p, "file": os.path.join(here, p)} for p in paths],
                                          override_num_blocks=blocks)
        # max_restarts=0: an actor that dies (a lost node, a file that crashes a native decoder) ends the run,
        # its rows kept for --resume, instead of Ray retrying that batch forever; and Ray's error line, on
        # each run, that restarted actors may lose their arguments goes with it. Ray 2.60 has no named
        # parameter for it yet (its own docs say map_batches(..., max_restarts=0)): not a deprecation to show.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            return items.map_batches(ScreeningActor, fn_constructor_kwargs=self._actor_args,
                                     batch_size=RAY_BATCH_SIZE, batch_format="numpy", num_cpus=self._threads,
                                     max_restarts=0, compute=self._ray.data.ActorPoolStrategy(size=self._actors))

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
                progress(summary.new_rows, len(to_do))
        _check_all_rows(summary, len(to_do), out)


def _to_parquet(screen: _Screen, model: ScreeningModel, paths: list[str], out: Path, summary: RunSummary, *,
                resume: bool, overwrite: bool, progress: Callable[[int, int], None] | None) -> None:
    """Have the workers write the rows into the ``out`` folder as Parquet files; count what they wrote."""
    import pyarrow.parquet as pq
    from ray.data import SaveMode

    with open_run_output(out, model, paths, summary, resume=resume, overwrite=overwrite, progress=progress,
                         open_rows=ParquetRows) as (folder, to_do):
        if not to_do:
            return
        write_started = time.perf_counter()
        # Writing a block is light I/O; reserving no CPU lets it run while the actors hold every CPU, so rows
        # stream to disk instead of piling up in the object store until the last actor is done. APPEND: the
        # folder was opened (and, without --resume, emptied) under the lock.
        screen.rows(to_do, ray_progress=progress is not None).write_parquet(
            str(out), mode=SaveMode.APPEND, ray_remote_args={"num_cpus": 0})
        summary.write_s += time.perf_counter() - write_started
        for written in folder.new_parts():
            summary.add(screen.results(pq.read_table(written)))
        if progress:
            progress(summary.new_rows, len(to_do))
        _check_all_rows(summary, len(to_do), out)


def _check_all_rows(summary: RunSummary, sent: int, out: Path) -> None:
    """RayEngineError when rows are missing; a warning when no worker could open a single file."""
    if summary.new_rows != sent:
        raise RayEngineError(
            f"Ray returned {summary.new_rows:,} rows for the {sent:,} files sent, in {out}: rows were lost "
            "(the workers must write where this machine reads); resume with --resume to screen the rest")
    unreadable = sum(reason.startswith("cannot read file") for _path, reason in summary.first_errors)
    if not summary.new_ok and unreadable == len(summary.first_errors) and unreadable:
        summary.warnings.append(
            f"no worker could read a single one of the {sent:,} files (e.g. {summary.first_errors[0][0]}: "
            f"{summary.first_errors[0][1]}): every Ray node must see them under the same absolute path "
            "(shared storage)")
