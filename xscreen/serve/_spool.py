"""The spool: received instances on disk before they are acknowledged, and the results still to send.

A C-STORE is answered "success" only once its instance is durable: written to a temporary file,
fsynced, renamed to its final name and the folder fsynced. After that, whatever happens to the
process, the instance is screened: on start, every spool file without a row in the result file
is screened (the spool and the result file are the whole state, nothing else to recover).

File names come from the SOP Instance UID only when it is a well-formed UID (digits and dots, at
most 64 characters), else from its SHA-256, so nothing a sender writes can name a path outside
the spool. Two instances with the same UID are one file, so one row.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on a POSIX system
    fcntl = None

INSTANCE_SUFFIX = ".dcm"
INCOMING = ".incoming"  # temporary files being written; never screened
OUTBOX = "outbox"  # results waiting to be sent (--send-to)
LOCK = ".lock"  # held by the one process using the spool
DEFAULT_MIN_FREE_MB = 64  # refuse instances when the spool's disk would have less left than this
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class SpoolInUseError(ValueError):
    """Another xscreen serve holds the spool: two receivers would screen its films twice."""


class SpoolFullError(OSError):
    """The spool's disk has no room for an instance: the C-STORE gets a failure status."""


def instance_name(sop_instance_uid: str) -> str:
    """A file name for an instance that cannot leave the spool: the UID itself, or a hash of it."""
    uid = str(sop_instance_uid).strip().rstrip("\x00")
    if len(uid) <= 64 and _UID.fullmatch(uid):
        return uid + INSTANCE_SUFFIX
    return "sha256-" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest() + INSTANCE_SUFFIX


def write_durably(folder: Path, name: str, chunks: Iterable[bytes], *, min_free: int = 0,
                  size: int | None = None) -> Path:
    """Write ``chunks`` to ``folder/name`` so that it exists whole or not at all, and survives a crash.

    Temporary file in ``folder/.incoming``, fsync, rename, fsync of the folder. Raises
    SpoolFullError when fewer than ``size + min_free`` bytes are free or the disk fills up while writing.
    """
    incoming = folder / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    if size is not None and shutil.disk_usage(folder).free < size + min_free:
        raise SpoolFullError(errno.ENOSPC, f"less than {size + min_free:,} bytes free", str(folder))
    tmp = incoming / f"{name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        final = folder / name
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpoolFullError(exc.errno, "the spool's disk is full", str(folder)) from exc
        raise
    _fsync_folder(folder)
    return final


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` for as long as this process lives (the kernel drops it on any exit)."""
    if fcntl is None:  # not POSIX: not locked
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolInUseError(f"{path.parent} is the spool of another running xscreen serve: "
                              "stop it, or choose another --spool") from None
    return fd


class Spool:
    """The folder of received instances (``DIR/*.dcm``) and of results waiting to be sent (``DIR/outbox``)."""

    def __init__(self, folder: str | os.PathLike, *, min_free_mb: float = DEFAULT_MIN_FREE_MB) -> None:
        self.folder = Path(folder)
        self.outbox = self.folder / OUTBOX
        self.min_free = int(min_free_mb * 1024 * 1024)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.folder / LOCK)
        self.outbox.mkdir(exist_ok=True)
        for tmp in (self.folder / INCOMING).glob("*.tmp"):  # torn writes of a killed run: never acknowledged
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the spool for another process."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def path_for(self, sop_instance_uid: str) -> Path:
        return self.folder / instance_name(sop_instance_uid)

    def store(self, sop_instance_uid: str, chunks: Iterable[bytes], size: int) -> tuple[Path, bool]:
        """Write an instance durably; ``(path, new)``: ``new`` is False when this UID is already spooled
        (kept as it is: one instance, one row)."""
        path = self.path_for(sop_instance_uid)
        if path.exists():
            return path, False
        return write_durably(self.folder, path.name, chunks, min_free=self.min_free, size=size), True

    def instances(self) -> Iterator[Path]:
        """Every spooled instance, oldest first (the order they were acknowledged, to the second)."""
        entries = [(e.stat().st_mtime_ns, e.name) for e in os.scandir(self.folder)
                   if e.is_file() and e.name.endswith(INSTANCE_SUFFIX)]
        return (self.folder / name for _, name in sorted(entries))
