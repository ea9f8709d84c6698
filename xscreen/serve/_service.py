"""Putting the pieces together: spool -> screener -> result file (+ outbox -> PACS), for serve and watch."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ..runtime import ScreeningModel, ScreeningResult
from ._scp import (
    DEFAULT_AE_TITLE,
    DEFAULT_MAX_ASSOCIATIONS,
    DEFAULT_MAX_INSTANCE_MB,
    DEFAULT_PORT,
    DicomReceiver,
    TlsFiles,
)
from ._screener import ArrivalScreener, OnScreened
from ._send import Destination, ResultSender
from ._spool import DEFAULT_MIN_FREE_MB, Spool

log = logging.getLogger("xscreen.serve")


class ResultPublisher:
    """``on_screened`` for the screener: an SR per screened DICOM film, into the outbox; with ``heatmaps``, also
    a heatmap capture of each film flagged for review (drawing one costs about 25 inferences: not for every film)."""

    def __init__(self, sender: ResultSender, model: ScreeningModel, *, heatmaps: bool) -> None:
        self.sender = sender
        self.model = model
        self.heatmaps = heatmaps

    def __call__(self, results: list[ScreeningResult], columns: list[dict[str, str]]) -> None:
        from ._sr import heatmap_capture, read_source_header, screening_report

        for result, column in zip(results, columns):
            if result.status != "ok" or not column.get("sop_instance_uid"):
                continue  # nothing to say about a film that was not screened, or is not DICOM
            try:
                source = read_source_header(result.path)
                self.sender.enqueue(screening_report(source, result, self.model))
                if self.heatmaps and result.heatmap is not None and result.flag is not False:
                    self.sender.enqueue(heatmap_capture(source, result, self.model))
            except Exception as exc:  # one film's result object must not stop screening the others
                log.error("no result object for %s: %s", column["sop_instance_uid"], exc)


def _each(callbacks: list) -> OnScreened | None:
    """One ``on_screened`` calling every callback in turn (None: none)."""
    if not callbacks:
        return None

    def on_screened(results: list[ScreeningResult], columns: list[dict[str, str]]) -> None:
        for callback in callbacks:
            callback(results, columns)
    return on_screened


class ScreeningService:
    """A receiver (or nothing, for watch), a screener, an optional sender and heatmap renderer, started and
    stopped together."""

    def __init__(self, screener: ArrivalScreener, sender: ResultSender | None = None,
                 receiver: DicomReceiver | None = None, renderer=None) -> None:
        self.screener = screener
        self.sender = sender
        self.receiver = receiver
        self.renderer = renderer

    def start(self, pending: Sequence[str | os.PathLike] = ()) -> int:
        """Start everything; the ``pending`` files without a row are screened first. Returns how many."""
        queued = self.screener.start(pending)
        if self.sender is not None:
            self.sender.start()
        if self.receiver is not None:
            try:
                self.receiver.start()
            except BaseException:
                self.close()
                raise
        return queued

    def close(self) -> None:
        """Stop receiving, screening (after the batch in hand) and sending; the spool and outbox keep the rest."""
        if self.receiver is not None:
            self.receiver.stop()
        self.screener.close()
        if self.renderer is not None:
            self.renderer.close()
        if self.sender is not None:
            self.sender.close()
        if self.receiver is not None:
            self.receiver.spool.close()

    def __enter__(self) -> ScreeningService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_service(model: ScreeningModel, out: str | os.PathLike, *, spool: str | os.PathLike | None = None,
                  host: str = "127.0.0.1", port: int = DEFAULT_PORT, ae_title: str = DEFAULT_AE_TITLE,
                  allow: Sequence[str] | None = None, max_associations: int = DEFAULT_MAX_ASSOCIATIONS,
                  max_instance_mb: float = DEFAULT_MAX_INSTANCE_MB, min_free_mb: float = DEFAULT_MIN_FREE_MB,
                  tls: TlsFiles | None = None, send_to: Destination | None = None, send_heatmaps: bool = False,
                  keep_identifiers: bool = False, batch_size: int | None = None, workers: int | None = None,
                  scope_check: bool = True, outbox: str | os.PathLike | None = None,
                  heatmap_dir: str | os.PathLike | None = None, heatmaps_all: bool = False,
                  watched: str | os.PathLike | None = None) -> tuple[ScreeningService, list[Path]]:
    """The service for ``xscreen serve`` (``spool`` given: a DICOM receiver) or ``xscreen watch`` (no spool;
    ``watched`` the folder, ``outbox`` for results to send). ``heatmap_dir``: a heatmap PNG of each flagged
    film there (every screened film with ``heatmaps_all``), as ``xscreen run --heatmaps`` draws them.
    Returns it with the files already spooled (screened first if without a row). Raises the report
    package's ReportOptionError for a model without heatmaps or a heatmap folder inside the watched one."""
    spooled = Spool(spool, min_free_mb=min_free_mb) if spool is not None else None
    sender = None
    if send_to is not None:
        box = spooled.outbox if spooled is not None else Path(outbox)
        box.mkdir(parents=True, exist_ok=True)
        sender = ResultSender(box, send_to, ae_title=ae_title, tls=tls.client_context() if tls else None)
    renderer = None
    callbacks = [ResultPublisher(sender, model, heatmaps=send_heatmaps)] if sender else []
    if heatmap_dir is not None:
        from ..report import FilmRenderer, check_run_outputs

        root = Path(watched if watched is not None else spool)
        check_run_outputs(root, Path(out), model, heatmap_dir=Path(heatmap_dir), every_film=heatmaps_all,
                          report=None)
        renderer = FilmRenderer(heatmap_dir=Path(heatmap_dir), root=root.resolve(), every_film=heatmaps_all)
        callbacks.append(lambda results, columns: renderer(results))
    screener = ArrivalScreener(
        model, out, keep_identifiers=keep_identifiers, batch_size=batch_size, workers=workers,
        scope_check=scope_check, heatmaps=model.has_heatmaps and (send_heatmaps or heatmap_dir is not None),
        on_screened=_each(callbacks))
    receiver = None
    if spooled is not None:
        receiver = DicomReceiver(spooled, screener, host=host, port=port, ae_title=ae_title, allow=allow,
                                 max_associations=max_associations, max_instance_mb=max_instance_mb, tls=tls)
    return ScreeningService(screener, sender, receiver, renderer), list(spooled.instances()) if spooled else []
