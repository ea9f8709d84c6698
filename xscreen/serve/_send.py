"""Sending results back (``--send-to AE@HOST:PORT``): a durable outbox and one thread that empties it.

A result object is written to ``SPOOL/outbox`` (durably, named by its SOP Instance UID) before
the row that says its film was screened, and sent by a thread of its own with C-STORE. A peer
that cannot be reached is retried with a growing delay (up to :data:`MAX_RETRY_DELAY_S`) while
films keep arriving and being screened; the outbox survives restarts. An instance the peer
refuses with a failure status is moved to ``outbox/refused`` and logged, so it cannot block the rest.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ._spool import INSTANCE_SUFFIX, instance_name, write_durably

log = logging.getLogger("xscreen.serve")

MAX_RETRY_DELAY_S = 60.0
REFUSED = "refused"
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
_DESTINATION = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})")


@dataclass(frozen=True)
class Destination:
    """Where results go: a DICOM node's AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``PACS@10.0.0.5:104`` (an IPv6 host in brackets); ValueError saying the expected form."""
        match = _DESTINATION.fullmatch(text.strip())
        if not match or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"expected AE@HOST:PORT (e.g. PACS@10.0.0.5:104), got {text!r}")
        return cls(match["ae"], match["host"].strip("[]"), int(match["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class ResultSender:
    """Keeps sending what is in ``outbox`` to ``destination`` until it is empty; :meth:`close` stops it.

    ``tls``: an ``ssl.SSLContext`` for the association (None: plain TCP).
    """

    def __init__(self, outbox: str | os.PathLike, destination: Destination, *, ae_title: str,
                 tls=None, first_retry_s: float = 1.0) -> None:
        self.outbox = Path(outbox)
        self.destination = destination
        self.ae_title = ae_title
        self.tls = tls
        self.first_retry_s = first_retry_s
        self.sent = 0
        self.refused = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send_forever, name="xscreen-send", daemon=True)

    def start(self) -> ResultSender:
        self._thread.start()
        return self

    def enqueue(self, dataset) -> Path:
        """Write ``dataset`` to the outbox (durably) and wake the sending thread."""
        from pydicom.filebase import DicomBytesIO

        buffer = DicomBytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        path = write_durably(self.outbox, instance_name(dataset.SOPInstanceUID), [buffer.getvalue()])
        self._wake.set()
        return path

    def waiting(self) -> list[Path]:
        """Results not sent yet, oldest first."""
        entries = [(e.stat().st_mtime_ns, e.name) for e in os.scandir(self.outbox)
                   if e.is_file() and e.name.endswith(INSTANCE_SUFFIX)]
        return [self.outbox / name for _, name in sorted(entries)]

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the instance being sent; what is left stays in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _send_forever(self) -> None:
        delay = self.first_retry_s
        while not self._stop.is_set():
            waiting = self.waiting()
            if not waiting:
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            try:
                self._send(waiting)
                delay = self.first_retry_s
            except ConnectionError as exc:
                log.warning("cannot send %d results to %s (%s): retrying in %.0f s", len(waiting),
                            self.destination, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_S)

    def _send(self, paths: list[Path]) -> None:
        """Send ``paths`` over one association; ConnectionError when it cannot be made or breaks."""
        import pydicom
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for uid in (SR_STORAGE, SC_STORAGE):
            ae.add_requested_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        d = self.destination
        assoc = ae.associate(d.host, d.port, ae_title=d.ae_title,
                             tls_args=(self.tls, d.host) if self.tls is not None else None)
        if not assoc.is_established:
            raise ConnectionError("association refused or no answer")
        try:
            for path in paths:
                if self._stop.is_set():
                    return
                status = assoc.send_c_store(pydicom.dcmread(path))
                if not status:  # no answer: the association broke
                    raise ConnectionError("no response to C-STORE")
                code = int(status.Status)
                if code == 0x0000 or 0xB000 <= code <= 0xBFFF:  # success, or warning: stored
                    path.unlink()
                    self.sent += 1
                else:
                    refused = self.outbox / REFUSED
                    refused.mkdir(exist_ok=True)
                    os.replace(path, refused / path.name)
                    self.refused += 1
                    log.error("%s refused %s with status 0x%04X: kept in %s", d, path.stem, code, refused)
        finally:
            assoc.release()
