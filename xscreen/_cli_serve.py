"""``xscreen serve`` and ``xscreen watch``: screen films as they arrive (registered into :func:`xscreen.cli.main`).

Both run until SIGINT or SIGTERM, then stop receiving, finish the batch in hand and exit 0; what was
acknowledged and not screened yet is screened at the next start, as after a kill -9 (the spool and
the result file are the state). Logs go to stderr,
one line per event, with UIDs but never patient identifiers.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from ._options import backend_option, labels_option, model_option, rename_option
from .cli import CommandError, open_model
from .report import ReportOptionError
from .runtime import OUTPUT_SUFFIXES, OutputInUseError, ResumeError
from .serve import Destination, MissingServeError, SpoolInUseError, TlsFiles, require_serve_extra
from .serve._scp import DEFAULT_AE_TITLE, DEFAULT_MAX_ASSOCIATIONS, DEFAULT_MAX_INSTANCE_MB, DEFAULT_PORT
from .serve._spool import DEFAULT_MIN_FREE_MB
from .serve._watch import DEFAULT_POLL_S, DEFAULT_SETTLE_S

log = logging.getLogger("xscreen.serve")


def _parse_destination(ctx, param, value: str | None) -> Destination | None:
    try:
        return None if value is None else Destination.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_allow(ctx, param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    titles = [t.strip() for t in value.split(",")]
    if not all(0 < len(t) <= 16 for t in titles):
        raise click.BadParameter(f"expected AE titles of 1 to 16 characters, comma-separated, got {value!r}")
    return titles


def _common_options(command):
    """Model, output and result-sending options shared by serve and watch."""
    options = [
        model_option, labels_option, rename_option, backend_option,
        click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("results.csv"),
                     show_default=True, help=f"Result file ({' or '.join(OUTPUT_SUFFIXES)}); rows are appended "
                     "across restarts, one per film."),
        click.option("--send-to", callback=_parse_destination, metavar="AE@HOST:PORT",
                     help="Send a DICOM Structured Report per screened film to this node (the PACS)."),
        click.option("--send-heatmaps", is_flag=True,
                     help="With --send-to: also a secondary capture of each flagged film under its heatmap."),
        click.option("--heatmaps", "heatmap_dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Write a heatmap PNG of each flagged film into this folder."),
        click.option("--heatmaps-all", is_flag=True, help="With --heatmaps: a PNG for every screened film."),
        click.option("--ae-title", default=DEFAULT_AE_TITLE, show_default=True, help="This node's AE title."),
        click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="TLS: this node's certificate (PEM); with --tls-key."),
        click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="TLS: this node's private key (PEM)."),
        click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="TLS: accept only peers with a certificate signed by this CA (PEM)."),
        click.option("--keep-identifiers", is_flag=True,
                     help="Add patient ID and accession number columns to --out (left out by default)."),
        click.option("--threads", type=click.IntRange(min=1), metavar="N", help="Inference threads."),
        click.option("--workers", type=click.IntRange(min=0), metavar="N", help="Decoding threads."),
        click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Largest batch."),
        click.option("--no-scope-check", is_flag=True, help="Screen every film, in scope or not."),
        click.option("--quiet", "-q", is_flag=True, help="Log warnings and errors only."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _setup(quiet: bool, out: Path, tls_cert, tls_key, tls_ca) -> TlsFiles | None:
    try:
        require_serve_extra()
    except MissingServeError as exc:
        raise CommandError(str(exc)) from None
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    for chatty in ("pynetdicom", "highdicom"):  # a line per PDU / copied module: ours say what happened
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CommandError(f"--out {out}: use a {' or '.join(OUTPUT_SUFFIXES)} file")
    if (tls_cert is None) != (tls_key is None) or (tls_ca is not None and tls_cert is None):
        raise CommandError("TLS needs --tls-cert and --tls-key (and optionally --tls-ca)")
    return TlsFiles(tls_cert, tls_key, tls_ca) if tls_cert else None


def _until_stopped(service) -> None:
    """Block until SIGINT or SIGTERM, or until screening fails (exit 2: the result file cannot be written)."""
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        if service.screener.failure is not None:
            break


def _open(model_path, labels, rename, backend, threads, **service_options):
    from .serve import build_service

    model = open_model(model_path, labels=labels, rename=rename, threads=threads, backend=backend)
    try:
        service, spooled = build_service(model, **service_options)
        queued = service.start(spooled)
    except (ResumeError, OutputInUseError, SpoolInUseError, ReportOptionError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the port is taken, the spool cannot be created
        where = exc.filename or (f"{service_options['host']}:{service_options['port']}" if "port" in service_options
                                 else service_options["out"])
        raise CommandError(f"{where}: {exc.strerror or exc}") from None
    if queued:
        log.info("%d films received before a restart and not screened yet: screening them first", queued)
    return service


@click.command()
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for received films (written before they are acknowledged) and results to send.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface (then use --allow).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--allow", callback=_parse_allow, metavar="AE1,AE2",
              help="Accept associations only from these calling AE titles [default: any].")
@click.option("--max-associations", type=click.IntRange(min=1), default=DEFAULT_MAX_ASSOCIATIONS, show_default=True)
@click.option("--max-instance-mb", type=click.FloatRange(min=0.001), default=DEFAULT_MAX_INSTANCE_MB,
              show_default=True, help="Refuse larger instances (failure status 0xA700).")
@click.option("--min-free-mb", type=click.FloatRange(min=0), default=DEFAULT_MIN_FREE_MB, show_default=True,
              help="Refuse instances (0xA700) that would leave less free space on the spool's disk.")
@_common_options
def serve(spool: Path, host: str, port: int, allow, max_associations: int, max_instance_mb: float,
          min_free_mb: float, model_path, labels, rename, backend, out: Path, send_to, send_heatmaps: bool,
          heatmap_dir, heatmaps_all: bool, ae_title: str, tls_cert, tls_key, tls_ca, keep_identifiers: bool,
          threads, workers, batch_size, no_scope_check: bool, quiet: bool) -> None:
    """Receive films over DICOM (C-ECHO, C-STORE of CR, DX and secondary capture) and screen each one.

    Every film is written to --spool before it is acknowledged, then screened like xscreen run
    (one row per SOP Instance UID in --out, with its Study/Series/SOP Instance UIDs). Killed at any
    moment, the same command screens every acknowledged film exactly once. Not a medical device.
    """
    tls = _setup(quiet, out, tls_cert, tls_key, tls_ca)
    service = _open(model_path, labels, rename, backend, threads, out=out, spool=spool, host=host, port=port,
                    ae_title=ae_title, allow=allow, max_associations=max_associations,
                    max_instance_mb=max_instance_mb, min_free_mb=min_free_mb, tls=tls, send_to=send_to,
                    send_heatmaps=send_heatmaps, keep_identifiers=keep_identifiers, batch_size=batch_size,
                    workers=workers, scope_check=not no_scope_check, heatmap_dir=heatmap_dir,
                    heatmaps_all=heatmaps_all)
    try:
        _until_stopped(service)
    finally:
        service.close()
    if service.screener.failure is not None:
        raise CommandError(f"screening stopped: {service.screener.failure}")
    log.info("stopped: %d rows written by this run", service.screener.summary.rows)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--settle", type=click.FloatRange(min=0), default=DEFAULT_SETTLE_S, show_default=True,
              help="Seconds a file's size must stay the same before it is screened.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=DEFAULT_POLL_S, show_default=True,
              help="Seconds between looks at the folder.")
@click.option("--once", is_flag=True, help="Screen what is in FOLDER now (once complete) and exit.")
@click.option("--follow-symlinks", is_flag=True, help="Enter symlinked folders and files pointing outside FOLDER.")
@_common_options
def watch(folder: Path, settle: float, poll: float, once: bool, follow_symlinks: bool, model_path, labels, rename,
          backend, out: Path, send_to, send_heatmaps: bool, heatmap_dir, heatmaps_all: bool, ae_title: str,
          tls_cert, tls_key, tls_ca, keep_identifiers: bool, threads, workers, batch_size, no_scope_check: bool,
          quiet: bool) -> None:
    """Screen each film that appears in FOLDER (recursively) once it is complete, across restarts.

    Same rows as xscreen run (plus DICOM UIDs); results to --send-to wait in .OUT.outbox (next to OUT) until sent.
    Not a medical device.
    """
    from .serve import FolderWatcher

    tls = _setup(quiet, out, tls_cert, tls_key, tls_ca)
    service = _open(model_path, labels, rename, backend, threads, out=out, ae_title=ae_title, tls=tls,
                    send_to=send_to, send_heatmaps=send_heatmaps, keep_identifiers=keep_identifiers,
                    batch_size=batch_size, workers=workers, scope_check=not no_scope_check,
                    outbox=out.with_name(f".{out.name}.outbox"),  # hidden: never watched
                    heatmap_dir=heatmap_dir, heatmaps_all=heatmaps_all, watched=folder)
    watcher = FolderWatcher(folder, service.screener, settle_s=settle, poll_s=poll, follow_symlinks=follow_symlinks)
    try:
        if once:
            watcher.run_until_done()
        else:
            thread = threading.Thread(target=watcher.run, name="xscreen-watch", daemon=True)
            thread.start()
            _until_stopped(service)
            watcher.stop()
    finally:
        service.close()
    if service.screener.failure is not None:
        raise CommandError(f"screening stopped: {service.screener.failure}")

