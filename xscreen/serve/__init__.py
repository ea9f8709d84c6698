"""Screening films as they arrive: a DICOM receiver (``xscreen serve``), a watched folder
(``xscreen watch``), and results sent back to the PACS as DICOM Structured Reports.

An optional extra (``pip install 'xscreen[serve]'``: pynetdicom, highdicom, pydicom), imported
only by these commands. It feeds the runtime's pipeline and writers, never a copy of them: a film
gets the same row here as from ``xscreen run``, plus its Study/Series/SOP Instance UIDs.
The underscored modules are private; this is the surface.
"""

from __future__ import annotations

from ._scp import STORAGE_CLASSES, DicomReceiver, TlsFiles
from ._screener import IDENTIFIER_COLUMNS, UID_COLUMNS, ArrivalScreener, instance_columns
from ._send import Destination, ResultSender
from ._service import ResultPublisher, ScreeningService, build_service
from ._spool import Spool, SpoolFullError, SpoolInUseError, instance_name, write_durably
from ._watch import FolderWatcher

SERVE_EXTRA = "pip install 'xscreen[serve]'"
_REQUIRED = ("pynetdicom", "highdicom", "pydicom")


class MissingServeError(ImportError):
    """pynetdicom, highdicom or pydicom is not installed; the message names the pip command."""


def require_serve_extra() -> None:
    """MissingServeError naming ``pip install 'xscreen[serve]'`` when a library of the extra is missing."""
    import importlib.util

    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingServeError(f"xscreen serve and watch need {', '.join(missing)}: {SERVE_EXTRA}")


__all__ = [
    "IDENTIFIER_COLUMNS",
    "SERVE_EXTRA",
    "STORAGE_CLASSES",
    "UID_COLUMNS",
    "ArrivalScreener",
    "Destination",
    "DicomReceiver",
    "FolderWatcher",
    "MissingServeError",
    "ResultPublisher",
    "ResultSender",
    "ScreeningService",
    "Spool",
    "SpoolFullError",
    "SpoolInUseError",
    "TlsFiles",
    "build_service",
    "instance_columns",
    "instance_name",
    "require_serve_extra",
    "write_durably",
]
