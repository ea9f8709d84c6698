"""``xscreen serve`` under load: films per second against ``xscreen run``, arrival-to-row latency,
peak memory, and a kill -9 halfway with a restart (acknowledged = screened, no duplicates).

From the repository root, with ``pip install -e '.[serve]'``::

    nice -n 10 .venv/bin/python benchmarks/serve_load.py --films 1000

Films: the full-resolution JPEGs of ``../shared/data/fullres`` (1-2k px) wrapped, bytes unchanged,
as DICOM DX films (JPEG Baseline transfer syntax, chest PA tags, a new SOP Instance UID per copy),
repeated to ``--films``. Steps, each timed apart:

* ``run``: ``xscreen run`` (the library call, model loaded before the clock starts) on the folder of films,
  before and again after ``serve`` (the machine is shared: the two bracket its load);
* ``serve``: ``xscreen serve`` in its own process with the bundled model; the films sent by
  pynetdicom over ``--associations`` concurrent associations; films/s from the first C-STORE to
  the last row; latency from each C-STORE's acknowledgement to its row appearing in the result
  file (polled every 50 ms); peak RSS of the server (``VmHWM``);
* ``trickle``: a fresh server; ``--trickle`` films sent one at a time, ``--every`` seconds apart (an
  X-ray unit rather than a burst), for the latency of a film that does not wait in a queue;
* ``kill``: a fresh spool; the same sending, ``kill -9`` of the server once half the films are
  acknowledged, the same command again; then every acknowledged film must have exactly one row.

Writes ``benchmarks/results/serve_load.json`` and ``.md``. Figures, not tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a source checkout without installing

from xscreen.bench import hardware_fingerprint  # noqa: E402
from xscreen.runtime import default_model_path, load_model, run_screening  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data" / "fullres"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def make_films(source: Path, n: int, folder: Path) -> list[Path]:
    """``n`` DX films wrapping the baseline JPEGs under ``source`` (progressive ones are not baseline: skipped)."""
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    jpegs = []
    for path in sorted(source.rglob("*.jp*g")):
        with Image.open(path) as im:
            if im.mode == "L" and not im.info.get("progressive"):
                jpegs.append((path.read_bytes(), im.size))
    if not jpegs:
        raise SystemExit(f"no baseline grey JPEGs under {source}: pass --data")
    folder.mkdir(parents=True)
    films = []
    for i in range(n):
        data, (width, height) = jpegs[i % len(jpegs)]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DX, generate_uid()
        meta.TransferSyntaxUID = JPEG_BASELINE
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = DX, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
        ds.PatientID, ds.PatientName, ds.InstanceNumber = f"BENCH{i}", "Bench^Film", 1
        ds.Rows, ds.Columns = height, width
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = encapsulate([data])
        ds["PixelData"].is_undefined_length = True
        path = folder / f"film{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        films.append(path)
    return films


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``xscreen serve`` in its own process (the command a user runs)."""

    def __init__(self, spool: Path, out: Path, port: int, log: Path) -> None:
        self.command = [sys.executable, "-m", "xscreen", "serve", "--spool", str(spool), "--out", str(out),
                        "--port", str(port)]
        self.port = port
        self.log = log
        self.process = None

    def start(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.answers_echo():
                return self
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"xscreen serve did not start listening (exit status {self.process.poll()}):\n{tail}")

    def answers_echo(self) -> bool:
        """A C-ECHO, not a bare TCP connect: that would hold an association slot until its ARTIM timeout."""
        from pynetdicom import AE

        ae = AE(ae_title="BENCH")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", self.port, ae_title="XSCREEN")
        if not assoc.is_established:
            return False
        assoc.release()
        return True

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)


class RowWatcher(threading.Thread):
    """Polls the result file every 50 ms; ``seen``: SOP Instance UID -> when its row first appeared; ``rows``: all."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.seen: dict[str, float] = {}
        self.rows: list[dict] = []
        self._halt = threading.Event()
        self._offset = 0
        self._header = None

    def run(self) -> None:
        while not self._halt.wait(0.05):
            self.read()

    def read(self) -> None:
        if not self.out.exists():
            return
        with open(self.out, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        now = time.monotonic()
        for row in csv.reader(complete.decode().splitlines()):
            if self._header is None:
                self._header = row
                continue
            record = dict(zip(self._header, row))
            self.rows.append(record)
            self.seen.setdefault(record["sop_instance_uid"], now)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.read()


def send_films(port: int, films: list[Path], associations: int, acks: dict[str, float],
               stop: threading.Event | None = None) -> list[str]:
    """C-STORE ``films`` over ``associations`` concurrent associations; ``acks``: UID -> acknowledgement time.
    Returns why each association that stopped early stopped."""
    import pydicom
    from pynetdicom import AE

    def sender(share: list[Path]) -> None:
        ae = AE(ae_title="BENCH")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120  # a busy 2-core machine
        ae.add_requested_context(DX, JPEG_BASELINE)
        assoc = ae.associate("127.0.0.1", port, ae_title="XSCREEN")
        if not assoc.is_established:
            stopped.append(f"{time.strftime('%H:%M:%S')} association not accepted")
            return
        try:
            for path in share:
                if stop is not None and stop.is_set():
                    return
                ds = pydicom.dcmread(path)
                status = assoc.send_c_store(ds)
                if not status or int(status.Status) != 0:  # the server went away (the kill -9 step)
                    stopped.append(f"{time.strftime('%H:%M:%S')} {path.name}: "
                                   f"{f'status 0x{int(status.Status):04X}' if status else 'no response'}")
                    return
                acks[ds.SOPInstanceUID] = time.monotonic()
        finally:
            if assoc.is_established:
                assoc.release()

    stopped: list[str] = []
    threads = [threading.Thread(target=sender, args=(films[i::associations],)) for i in range(associations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stopped


def step_run(folder: Path, scratch: Path) -> dict:
    model = load_model(default_model_path())
    summary = run_screening(folder, model, scratch / "run.csv", overwrite=True)
    return {"films": summary.rows, "screened": summary.ok, "elapsed_s": summary.elapsed_s,
            "films_per_s": summary.rows / summary.elapsed_s}


@contextmanager
def served(scratch: Path, name: str, spool: str):
    """A fresh ``xscreen serve`` writing ``scratch/NAME.csv`` and a watcher of its rows; both stopped on exit.
    Yields ``(port, watcher, server)``."""
    out, port = scratch / f"{name}.csv", free_port()
    server = Server(scratch / spool, out, port, scratch / f"{name}.log").start()
    watcher = RowWatcher(out)
    watcher.start()
    try:
        yield port, watcher, server
    finally:
        watcher.stop()
        server.stop()


def _wait_for_rows(watcher: RowWatcher, acks: dict[str, float]) -> None:
    while len(watcher.seen) < len(acks):
        time.sleep(0.05)


def _latency_percentiles(watcher: RowWatcher, acks: dict[str, float]) -> dict:
    latencies = sorted(watcher.seen[uid] - acks[uid] for uid in acks)
    return {"latency_p50_s": statistics.median(latencies),
            "latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))]}


def step_serve(films: list[Path], scratch: Path, associations: int) -> dict:
    acks: dict[str, float] = {}
    with served(scratch, "serve", "spool") as (port, watcher, server):
        started = time.monotonic()
        stopped = send_films(port, films, associations, acks)
        sent_s = time.monotonic() - started
        _wait_for_rows(watcher, acks)
        elapsed = max(watcher.seen.values()) - started
        peak = server.peak_rss_mb()
    return {"films": len(acks), "rows": len(watcher.rows), "elapsed_s": elapsed, "films_per_s": len(acks) / elapsed,
            "sending_s": sent_s, **_latency_percentiles(watcher, acks), "peak_rss_mb": peak,
            "not_acknowledged": len(films) - len(acks), "associations_stopped": stopped}


def step_trickle(films: list[Path], scratch: Path, every_s: float) -> dict:
    """Films one at a time, ``every_s`` apart (an X-ray unit, not a burst): latency without a queue."""
    acks: dict[str, float] = {}
    with served(scratch, "trickle", "spool-trickle") as (port, watcher, _server):
        for film in films:
            started = time.monotonic()
            send_films(port, [film], 1, acks)
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
        _wait_for_rows(watcher, acks)
    return {"films": len(acks), "every_s": every_s, **_latency_percentiles(watcher, acks)}


def step_kill(films: list[Path], scratch: Path, associations: int) -> dict:
    spool, out, port = scratch / "spool-kill", scratch / "kill.csv", free_port()
    server = Server(spool, out, port, scratch / "kill.log").start()
    acks: dict[str, float] = {}
    stop = threading.Event()
    sending = threading.Thread(target=send_films, args=(port, films, associations, acks, stop))
    sending.start()
    while len(acks) < len(films) // 2:
        time.sleep(0.01)
    server.kill9()
    stop.set()
    sending.join()
    acknowledged = set(acks)
    watcher = RowWatcher(out)
    watcher.read()
    rows_at_kill = len(watcher.rows)
    spooled = len(list(spool.glob("*.dcm")))
    restarted = time.monotonic()
    server.start()
    try:
        while len(watcher.rows) < spooled:
            time.sleep(0.1)
            watcher.read()
        recovery_s = time.monotonic() - restarted
        time.sleep(1.0)  # a duplicate would show now
        watcher.read()
    finally:
        server.stop()
    uids = [r["sop_instance_uid"] for r in watcher.rows]
    return {"acknowledged": len(acknowledged), "rows_at_kill": rows_at_kill, "spooled_at_kill": spooled,
            "rows_after_restart": len(uids), "duplicates": len(uids) - len(set(uids)),
            "acknowledged_without_row": len(acknowledged - set(uids)), "restart_to_all_rows_s": recovery_s}


def markdown(report: dict) -> str:
    run, after, serve, kill = report["run"], report["run_after"], report["serve"], report["kill"]
    run_rate = (run["films_per_s"] + after["films_per_s"]) / 2
    share = serve["films_per_s"] / run_rate
    stopped = serve["associations_stopped"]
    return "\n".join([
        "# `xscreen serve` under load (`benchmarks/serve_load.py`)",
        "",
        f"Measured {report['measured_at']} on {report['machine']} with `{report['command']}`: "
        f"{report['films']:,} DX films (the full-resolution JPEGs of `../shared/data/fullres` wrapped as DICOM, "
        f"JPEG Baseline), bundled model, {report['associations']} concurrent pynetdicom associations on loopback.",
        "",
        f"Conditions: {report['conditions']}",
        "",
        "| what | films | films/s | arrival-to-row p50 | p95 | peak RSS of the server |",
        "|---|---|---|---|---|---|",
        *(f"| `xscreen run` on the same files, {when} serve | {r['films']:,} | {r['films_per_s']:.1f} | - | - | - |"
          for when, r in (("before", run), ("after", after))),
        f"| `xscreen serve` | {serve['films']:,} | {serve['films_per_s']:.1f} "
        f"({100 * share:.0f} % of the runs' mean) | "
        f"{serve['latency_p50_s']:.2f} s | {serve['latency_p95_s']:.2f} s | {serve['peak_rss_mb']:.0f} MB |",
        "",
        f"One film at a time, every {report['trickle']['every_s']:.0f} s ({report['trickle']['films']} films, "
        "a fresh server): arrival-to-row "
        f"**p50 {report['trickle']['latency_p50_s']:.2f} s, p95 {report['trickle']['latency_p95_s']:.2f} s**. "
        f"In the burst above all {serve['films']:,} films arrive within {serve['sending_s']:.0f} s, faster than "
        "they can be screened, so its latency is mostly the wait in the queue.",
        "",
        f"Senders: {serve['not_acknowledged']} of {report['films']:,} films not acknowledged"
        + (f" (associations that stopped early: {'; '.join(stopped)})." if stopped else "."),
        "",
        f"Kill -9 once {kill['acknowledged']:,} films were acknowledged ({kill['rows_at_kill']:,} had rows, "
        f"{kill['spooled_at_kill']:,} were in the spool), then the same command again: "
        f"**{kill['acknowledged_without_row']} acknowledged films without a row, "
        f"{kill['duplicates']} duplicate rows**; "
        f"{kill['rows_after_restart']:,} rows, the last {kill['restart_to_all_rows_s']:.1f} s after the restart "
        "(model load included).",
        "",
        "films/s for serve counts from the first C-STORE to the last row, receiving included; for run, "
        "the screening call without the model load. Latency: from the C-STORE acknowledgement to the "
        "row in the result file (polled every 50 ms).",
        "",
    ])


def _machine() -> str:
    hardware = hardware_fingerprint()
    return f"{hardware['cpu_model']} ({hardware['cores_usable']} usable cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--trickle", type=int, default=20, help="Films sent one at a time for the latency step.")
    parser.add_argument("--every", type=float, default=2.0, help="Seconds between those films.")
    parser.add_argument("--conditions", default="", help="A sentence on the machine's load, for the report.")
    args = parser.parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # the probes while the server starts
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        scratch = Path(tmp)
        films = make_films(args.data, args.films, scratch / "films")
        report = {"films": args.films, "associations": args.associations,
                  "command": f"nice -n 10 python benchmarks/serve_load.py --films {args.films}",
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "machine": _machine(), "hardware": hardware_fingerprint()}
        # run before and after serve: the machine is shared, the two runs bracket its load
        for name, step in (("run", lambda: step_run(scratch / "films", scratch)),
                           ("serve", lambda: step_serve(films, scratch, args.associations)),
                           ("run_after", lambda: step_run(scratch / "films", scratch)),
                           ("trickle", lambda: step_trickle(films[:args.trickle], scratch, args.every)),
                           ("kill", lambda: step_kill(films, scratch, args.associations))):
            started = time.monotonic()
            report[name] = step()
            print(f"{name}: {json.dumps(report[name])} ({time.monotonic() - started:.0f} s)", flush=True)
    report["conditions"] = (f"{args.conditions} Load average (1 min) {load_before:.1f} before, "
                            f"{os.getloadavg()[0]:.1f} after.").strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "serve_load.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
