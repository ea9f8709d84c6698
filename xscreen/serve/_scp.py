"""``xscreen serve``: a DICOM storage SCP (pynetdicom) that spools, acknowledges, then screens.

Shaped like pynetdicom's own ``storescp``: handlers bound to events, the instance written to
storage inside the C-STORE handler, and the status the standard defines returned from it:
``0x0000`` only once the instance is durable in the spool, ``0xA700`` (out of resources) when
the spool's disk is full or the instance is over ``--max-instance-mb``, ``0xC000`` (cannot
understand) without a usable SOP Instance UID. Screening runs on its own thread
(:class:`ArrivalScreener`), so a slow model never delays an acknowledgement; results to send
back go through the outbox (:class:`ResultSender`) so a PACS that is down never blocks either.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._screener import ArrivalScreener
from ._spool import Spool, SpoolFullError

log = logging.getLogger("xscreen.serve")

# Storage classes a chest film arrives as: CR, DX (for presentation and for processing), and
# secondary capture (digitised films, exports); the scope check decides what is screened.
STORAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
}
DEFAULT_PORT = 11112
DEFAULT_AE_TITLE = "XSCREEN"
DEFAULT_MAX_ASSOCIATIONS = 4
DEFAULT_MAX_INSTANCE_MB = 200.0  # a large DX film is ~ 30 MB uncompressed
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
ACSE_TIMEOUT_S = 10
_COMMAND_SLACK = 64 * 1024  # bytes of command sets and PDU headers around an instance


@dataclass(frozen=True)
class TlsFiles:
    """``--tls-cert/--tls-key`` (this node's identity) and ``--tls-ca`` (demand client certificates it signed)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        if self.ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context

    def client_context(self) -> ssl.SSLContext:
        """For sending results: verify the peer with ``ca`` (the system's CAs without), show our certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context


class DicomReceiver:
    """A running storage SCP: :meth:`start`, then :meth:`stop` (or a ``with`` block).

    ``allow``: calling AE titles accepted (None: any). Everything received is spooled under
    ``spool`` before it is acknowledged and handed to ``screener``.
    """

    def __init__(self, spool: Spool, screener: ArrivalScreener, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, ae_title: str = DEFAULT_AE_TITLE, allow: Sequence[str] | None = None,
                 max_associations: int = DEFAULT_MAX_ASSOCIATIONS, max_instance_mb: float = DEFAULT_MAX_INSTANCE_MB,
                 tls: TlsFiles | None = None) -> None:
        self.spool = spool
        self.screener = screener
        self.host, self.port, self.ae_title = host, port, ae_title
        self.allow = list(allow) if allow else None
        self.max_associations = max_associations
        self.max_instance_bytes = int(max_instance_mb * 1024 * 1024)
        self.tls = tls
        self.received = 0
        self._server = None
        self._bytes_in: dict[int, int] = {}  # association -> bytes received since its last C-STORE
        self._lock = threading.Lock()

    def start(self) -> DicomReceiver:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = self.max_associations
        ae.network_timeout = ae.dimse_timeout = 60
        # ARTIM: a connection that never asks for an association (a port scan) frees its slot after this
        ae.acse_timeout = ACSE_TIMEOUT_S
        if self.allow is not None:
            ae.require_calling_aet = self.allow
        ae.add_supported_context(Verification)
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        handlers = [(evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS), (evt.EVT_C_STORE, self._handle_store),
                    (evt.EVT_DATA_RECV, self._count_bytes), (evt.EVT_REJECTED, self._rejected),
                    (evt.EVT_CONN_CLOSE, self._forget)]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers,
                                       ssl_context=self.tls.server_context() if self.tls else None)
        self.port = self._server.server_address[1]  # port 0 asked for any free port
        log.info("listening on %s:%d as %s%s", self.host, self.port, self.ae_title, " (TLS)" if self.tls else "")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> DicomReceiver:
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle_store(self, event) -> int:
        """Spool the instance durably, then acknowledge; the status says what happened to it."""
        with self._lock:
            self._bytes_in[id(event.assoc)] = 0
        uid = str(event.request.AffectedSOPInstanceUID or "")
        data = event.request.DataSet.getvalue()
        if not uid:
            log.warning("refused an instance without a SOP Instance UID from %s", event.assoc.requestor.ae_title)
            return STATUS_CANNOT_UNDERSTAND
        if len(data) > self.max_instance_bytes:
            log.warning("refused %s: %d bytes, over --max-instance-mb", uid, len(data))
            return STATUS_OUT_OF_RESOURCES
        meta = _file_meta_bytes(event.file_meta)
        try:
            path, new = self.spool.store(uid, (b"\x00" * 128, b"DICM", meta, data), 132 + len(meta) + len(data))
        except SpoolFullError as exc:
            log.error("refused %s: %s", uid, exc.strerror)
            return STATUS_OUT_OF_RESOURCES
        except OSError as exc:
            log.error("refused %s: cannot write the spool (%s)", uid, exc)
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            self.received += 1
        if new:
            self.screener.submit(path)
        log.info("received %s from %s%s", uid, event.assoc.requestor.ae_title, "" if new else " (again: one row)")
        return STATUS_SUCCESS

    def _count_bytes(self, event) -> None:
        """Abort an association that sends more than an instance may hold, before it fills memory."""
        key = id(event.assoc)
        with self._lock:
            total = self._bytes_in.get(key, 0) + len(event.data)
            self._bytes_in[key] = total
        if total > self.max_instance_bytes + _COMMAND_SLACK:
            log.warning("aborted an association from %s: instance over --max-instance-mb",
                        event.assoc.requestor.ae_title)
            event.assoc.abort()

    def _forget(self, event) -> None:
        with self._lock:
            self._bytes_in.pop(id(event.assoc), None)

    def _rejected(self, event) -> None:
        log.warning("rejected an association from %s (%s)", event.assoc.requestor.ae_title,
                    event.assoc.requestor.address)


def _file_meta_bytes(file_meta) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, file_meta, enforce_standard=True)
    return buffer.getvalue()

