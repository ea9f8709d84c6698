"""Who writes a result file: a lock, so two runs never write one file at once, and a sidecar
``<out>.meta.json`` naming the model that wrote it, so a resume cannot mix two models' rows.

The lock is ``fcntl.flock`` on the result file itself (released by the kernel when the process
dies, so a killed run never leaves a stale lock); the holder's pid and host are in the sidecar.
Where ``fcntl`` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import __version__
from ._model import ScreeningModel
from ._writers import ResumeError

try:
    import fcntl
except ImportError:  # not on a POSIX system: no locking
    fcntl = None

RECORD_SUFFIX = ".meta.json"
# What must match for a resume to append rows to the same file.
IDENTITY_KEYS = ("model_sha256", "threshold", "preprocessing")


class OutputInUseError(ValueError):
    """Another run holds the result file; the message says which process."""


def record_path(out: str | os.PathLike) -> Path:
    """The sidecar of a result file: ``results.csv`` -> ``results.csv.meta.json``."""
    out = Path(out)
    return out.with_name(out.name + RECORD_SUFFIX)


def read_record(out: str | os.PathLike) -> dict | None:
    """The sidecar's content, or None when there is none (or it is not JSON)."""
    try:
        record = json.loads(record_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@contextmanager
def locked_output(out: str | os.PathLike, *, folder: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (created empty if absent; a folder when ``folder``) for the duration;
    OutputInUseError if taken."""
    out = Path(out)
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # flock works on a folder's descriptor too (Linux, macOS): a Parquet result folder is locked like a file.
    if folder:
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    else:
        fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = read_record(out) or {}
            who = (f" (pid {holder['pid']} on {holder['host']}, since {holder.get('run_started_at', '?')})"
                   if "pid" in holder and "host" in holder else "")
            raise OutputInUseError(
                f"{out} is being written by another xscreen run{who}: wait for it to finish, "
                "or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def model_identity(model: ScreeningModel) -> dict:
    """What identifies the model behind a result file's rows."""
    meta = model.metadata
    return {
        "model_path": str(model.path),
        "model_sha256": model.sha256,
        "format": model.format,
        "labels": list(meta.labels),
        "negative_label": meta.negative_label,
        "threshold": meta.threshold,
        "preprocessing": meta.preprocessing,
    }


def check_resume(out: str | os.PathLike, model: ScreeningModel) -> None:
    """ResumeError naming both models when ``out`` was written by another model (sha256, threshold, preprocessing)."""
    record = read_record(out)
    if record is None:
        return  # written before sidecars existed, or by hand: the column check still applies
    ours = model_identity(model)
    differ = [key for key in IDENTITY_KEYS if record.get(key) != ours[key]]
    if differ:
        theirs = ", ".join(f"{key} {record.get(key)}" for key in differ)
        mine = ", ".join(f"{key} {ours[key]}" for key in differ)
        raise ResumeError(
            f"cannot resume {out}: it was written by {record.get('model_path')} ({theirs}), not by "
            f"{model.path} ({mine}). Resume with that model, choose another --out, or pass --overwrite"
        )


def write_record(out: str | os.PathLike, model: ScreeningModel, *, resumed: bool) -> dict:
    """Write the sidecar at the start of a run: the model's identity, this run's pid, host and times."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    earlier = (read_record(out) or {}) if resumed else {}
    record = {
        **model_identity(model),
        "xscreen_version": __version__,
        "started_at": earlier.get("started_at", now),
        "resumed_at": [*earlier.get("resumed_at", []), now] if resumed else [],
        "run_started_at": now,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    path = record_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return record
