"""xscreen serve / watch with DICOM software nobody here wrote: dcmtk's echoscu/storescu and pynetdicom as
senders, Orthanc as the PACS that sends films and receives the Structured Reports.

Films: the real chest CR of pydicom-data, and CR/DX files made here from synthetic pixels with correct tags.
Every server runs on loopback on a free port and is stopped by the test.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import SCOPED_FP32_TFLITE, film

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from pydicom.dataset import FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from xscreen.runtime import default_model_path, load_model, run_screening  # noqa: E402
from xscreen.serve import (  # noqa: E402
    Destination,
    FolderWatcher,
    SpoolFullError,
    build_service,
    instance_name,
    write_durably,
)

pytestmark = pytest.mark.timeout(120)
CR, DX = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1"
PATIENT_ID = "PAT-4711-SECRET"
needs_dcmtk = pytest.mark.skipif(shutil.which("storescu") is None or shutil.which("echoscu") is None,
                                 reason="dcmtk not installed (apt-get install dcmtk)")
needs_orthanc = pytest.mark.skipif(shutil.which("Orthanc") is None,
                                   reason="Orthanc not installed (apt-get install orthanc)")


def _real_chest_cr() -> Path | None:
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file("RG1_UNCI.dcm", download=False)
    except TypeError:  # pydicom without the download flag
        path = get_testdata_file("RG1_UNCI.dcm")
    return Path(path) if path else None


REAL_CR = _real_chest_cr()
needs_real_cr = pytest.mark.skipif(REAL_CR is None, reason="pydicom-data's RG1_UNCI.dcm is not installed")


def make_film(path: Path, level: int = 60, *, sop_class: str = DX, modality: str = "DX", seed: int = 0,
              sop_uid: str | None = None, study_uid: str | None = None, size: tuple[int, int] = (96, 80)) -> Path:
    """A frontal chest CR/DX film from synthetic pixels, with the tags a modality writes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = modality, "CHEST", "PA"
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "Doe^Jane", PATIENT_ID, "ACC-99"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20260101", "120000", "1", 1, 1
    ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19700101", "F", "Ward^A"
    pixels = film(level, size=size, seed=seed).astype(np.uint16) * 16
    pixels[0, :2] = 0, 255 * 16  # the decoder stretches a film's own range: pin it to the 8-bit levels
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_rows(out: Path) -> list[dict]:
    if not out.exists():
        return []
    with open(out, newline="") as fh:
        return list(csv.DictReader(fh))


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def scoped_model():
    return load_model(SCOPED_FP32_TFLITE)


@contextmanager
def serving(tmp_path: Path, model, **options):
    """xscreen serve in this process, on a free port; yields the running service."""
    service, spooled = build_service(model, tmp_path / "results.csv", spool=tmp_path / "spool", port=0, **options)
    service.start(spooled)
    try:
        yield service
    finally:
        service.close()


def pynetdicom_store(port: int, paths, *, calling: str = "MODALITY", called: str = "XSCREEN") -> list[int]:
    """C-STORE ``paths`` over one association; the status of each (-1: no answer, the association ended)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    for sop_class in (CR, DX):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(getattr(assoc.send_c_store(pydicom.dcmread(p)), "Status", -1)) for p in paths]
    finally:
        assoc.release()


@needs_dcmtk
def test_dcmtk_echo_and_store_one_row_per_instance(tmp_path, scoped_model, caplog):
    caplog.set_level(logging.INFO)
    films = [make_film(tmp_path / f"f{i}.dcm", level, sop_class=cls, modality=mod, seed=i)
             for i, (level, cls, mod) in enumerate([(40, CR, "CR"), (120, DX, "DX"), (200, DX, "DX")])]
    with serving(tmp_path, scoped_model) as service:
        port = service.receiver.port
        echo = subprocess.run(["echoscu", "-aec", "XSCREEN", "127.0.0.1", str(port)], capture_output=True, text=True)
        assert echo.returncode == 0, echo.stderr
        # The first film twice: the same SOP Instance UID is one instance, one row.
        store = subprocess.run(["storescu", "-aec", "XSCREEN", "127.0.0.1", str(port), *map(str, films),
                                str(films[0])], capture_output=True, text=True)
        assert store.returncode == 0, store.stderr
        assert service.screener.wait_idle()
    rows = read_rows(tmp_path / "results.csv")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in films]
    assert sorted(r["sop_instance_uid"] for r in rows) == sorted(h.SOPInstanceUID for h in headers)
    by_uid = {r["sop_instance_uid"]: r for r in rows}
    expected = run_screening(tmp_path / "f0.dcm", scoped_model, tmp_path / "run.csv")
    assert expected.ok == 1
    run_row = read_rows(tmp_path / "run.csv")[0]
    for header, label in zip(headers, ["healthy", "pneumonia", "covid"]):
        row = by_uid[header.SOPInstanceUID]
        assert (row["status"], row["prediction"]) == ("ok", label)
        assert row["study_instance_uid"] == header.StudyInstanceUID
        assert row["series_instance_uid"] == header.SeriesInstanceUID
        assert Path(row["path"]).name == header.SOPInstanceUID + ".dcm"
    # the same film, the same numbers as xscreen run
    served = by_uid[headers[0].SOPInstanceUID]
    probabilities = [k for k in run_row if k.startswith("prob_")]
    assert [served[k] for k in probabilities] == [run_row[k] for k in probabilities]
    text = (tmp_path / "results.csv").read_text() + caplog.text
    assert PATIENT_ID not in text and "Doe" not in text and "ACC-99" not in text


def test_keep_identifiers_adds_their_columns(tmp_path, scoped_model):
    with serving(tmp_path, scoped_model, keep_identifiers=True) as service:
        assert pynetdicom_store(service.receiver.port, [make_film(tmp_path / "a.dcm")]) == [0]
        assert service.screener.wait_idle()
    (row,) = read_rows(tmp_path / "results.csv")
    assert (row["patient_id"], row["accession_number"]) == (PATIENT_ID, "ACC-99")


@needs_dcmtk
def test_allow_rejects_other_calling_ae_titles(tmp_path, scoped_model):
    with serving(tmp_path, scoped_model, allow=["PACS"]) as service:
        port = str(service.receiver.port)
        other = subprocess.run(["echoscu", "-aet", "INTRUDER", "-aec", "XSCREEN", "127.0.0.1", port],
                               capture_output=True, text=True)
        allowed = subprocess.run(["echoscu", "-aet", "PACS", "-aec", "XSCREEN", "127.0.0.1", port],
                                 capture_output=True, text=True)
    assert other.returncode != 0 and "Rejected" in other.stderr + other.stdout
    assert allowed.returncode == 0, allowed.stderr


def test_refuses_oversized_instances_and_a_full_spool_with_a_failure_status(tmp_path, scoped_model):
    big = make_film(tmp_path / "big.dcm", seed=1)  # 15 kB
    huge = make_film(tmp_path / "huge.dcm", seed=1, size=(400, 400))  # 320 kB
    with serving(tmp_path / "small", scoped_model, max_instance_mb=0.001) as service:
        assert pynetdicom_store(service.receiver.port, [big]) == [0xA700]
        # far over the limit: the association is aborted while it sends, before the film fills memory
        assert pynetdicom_store(service.receiver.port, [huge]) == [-1]
    with serving(tmp_path / "full", scoped_model, min_free_mb=10 ** 9) as service:  # a petabyte free needed
        assert pynetdicom_store(service.receiver.port, [big]) == [0xA700]
    for case in ("small", "full"):
        assert not list((tmp_path / case / "spool").glob("*.dcm"))
        assert read_rows(tmp_path / case / "results.csv") == []


def test_a_disk_full_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SpoolFullError):
        write_durably(tmp_path, "x.dcm", [b"data"])
    assert not (tmp_path / "x.dcm").exists() and not list((tmp_path / ".incoming").iterdir())


@pytest.mark.parametrize("uid", ["../../etc/passwd", "/abs/path", "1.2.3/../../x", "a" * 80, "1." * 40 + "1", ""])
def test_spool_names_never_leave_the_spool(uid):
    name = instance_name(uid)
    assert "/" not in name and name.endswith(".dcm") and not name.startswith(".")
    assert instance_name("1.2.840.5") == "1.2.840.5.dcm"


def test_kill_9_then_restart_screens_every_acknowledged_film_once(tmp_path):
    # Films large enough that decoding is slower than receiving: some are acknowledged, not yet screened.
    films = [make_film(tmp_path / f"k{i}.dcm", 40 + 15 * i, seed=i, size=(1024, 1024)) for i in range(10)]
    port = free_port()
    command = [sys.executable, "-m", "xscreen", "serve", "--port", str(port), "--spool", str(tmp_path / "spool"),
               "--out", str(tmp_path / "results.csv"), "--model", str(SCOPED_FP32_TFLITE), "--workers", "0",
               "--batch-size", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}

    log = tmp_path / "serve.log"

    def start():
        with open(log, "a") as err:
            process = subprocess.Popen(command, env=env, stderr=err)
        wait_for(lambda: _listening(port) or process.poll() is not None, what="xscreen serve to listen")
        assert process.poll() is None, log.read_text()
        return process

    process = start()
    try:
        statuses = pynetdicom_store(port, films)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    acknowledged = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                    for f, status in zip(films, statuses) if status == 0}
    assert len(acknowledged) == len(films)
    before = len(read_rows(tmp_path / "results.csv"))
    process = start()
    try:
        wait_for(lambda: len(read_rows(tmp_path / "results.csv")) >= len(acknowledged), timeout=90,
                 what=f"every film's row (server log: {log.read_text()[-1000:]})")
        time.sleep(0.5)  # a duplicate would come now
        rows = read_rows(tmp_path / "results.csv")
    finally:
        process.terminate()
        process.wait(60)
    uids = [r["sop_instance_uid"] for r in rows]
    assert sorted(uids) == sorted(acknowledged), f"{before} rows before the restart"
    assert process.returncode == 0, log.read_text()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_pacs_that_is_down_is_retried_and_never_blocks_receiving(tmp_path, scoped_model):
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage

    pacs_port = free_port()
    got = []
    with serving(tmp_path, scoped_model, send_to=Destination("PACS", "127.0.0.1", pacs_port)) as service:
        service.sender.first_retry_s = 0.2
        films = [make_film(tmp_path / f"p{i}.dcm", seed=i) for i in range(3)]
        statuses = pynetdicom_store(service.receiver.port, films)
        assert statuses == [0, 0, 0]  # acknowledged while nobody takes the results
        assert service.screener.wait_idle()
        assert len(service.sender.waiting()) == 3
        pacs = AE(ae_title="PACS")
        pacs.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
        server = pacs.start_server(("127.0.0.1", pacs_port), block=False,
                                   evt_handlers=[(evt.EVT_C_STORE, lambda e: got.append(e.dataset) or 0)])
        try:
            wait_for(lambda: len(got) == 3, timeout=15, what="the SRs to reach the PACS once it is up")
        finally:
            server.shutdown()
        assert service.sender.waiting() == []
    assert {ds.SOPClassUID for ds in got} == {ComprehensiveSRStorage}


@contextmanager
def orthanc(tmp_path: Path, xscreen_port: int):
    """Orthanc on loopback with its own storage and ports, xscreen as a known modality; yields its REST URL."""
    http, dicom = free_port(), free_port()
    config = {"Name": "xscreen-test", "StorageDirectory": str(tmp_path / "orthanc"),
              "IndexDirectory": str(tmp_path / "orthanc"), "HttpPort": http, "DicomPort": dicom,
              "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
              "DicomModalities": {"xscreen": ["XSCREEN", "127.0.0.1", xscreen_port]}}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(["Orthanc", str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}"
    try:
        wait_for(lambda: _listening(http), what="Orthanc")
        yield url, dicom
    finally:
        process.terminate()
        process.wait(20)


def rest(url: str, data: bytes | None = None):
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
        body = response.read()
    return body if url.endswith("/file") else json.loads(body)


@needs_orthanc
@needs_real_cr
def test_orthanc_sends_a_film_and_gets_a_structured_report_back(tmp_path):
    model = load_model(default_model_path())
    port = free_port()
    with orthanc(tmp_path, port) as (url, orthanc_dicom):
        source = pydicom.dcmread(REAL_CR, stop_before_pixels=True)
        film_id = rest(f"{url}/instances", REAL_CR.read_bytes())["ID"]
        service, spooled = build_service(model, tmp_path / "results.csv", spool=tmp_path / "spool", port=port,
                                         send_to=Destination("ORTHANC", "127.0.0.1", orthanc_dicom),
                                         send_heatmaps=True)
        service.start(spooled)
        try:
            rest(f"{url}/modalities/xscreen/store", film_id.encode())
            study = rest(f"{url}/instances/{film_id}/study")["ID"]

            def results():
                found = {}
                for instance in rest(f"{url}/studies/{study}/instances"):
                    ds = pydicom.dcmread(__import__("io").BytesIO(rest(f"{url}/instances/{instance['ID']}/file")))
                    found[ds.Modality] = ds
                return found if {"SR", "OT"} <= set(found) else None

            found = wait_for(results, timeout=40, what="the SR and heatmap in Orthanc")
        finally:
            service.close()
    (row,) = read_rows(tmp_path / "results.csv")
    sr, capture = found["SR"], found["OT"]
    assert sr.StudyInstanceUID == capture.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientID == source.PatientID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    items = {item.ConceptNameCodeSequence[0].CodeMeaning: item for item in sr.ContentSequence}
    assert items["Finding"].TextValue.startswith(row["prediction"])
    assert items["Model SHA-256"].TextValue == model.sha256
    for label in model.labels:
        value = float(items[f"Probability of {label}"].MeasuredValueSequence[0].NumericValue)
        assert value == pytest.approx(float(row[f"prob_{label}"]), abs=1e-5)
    assert items["Review flag"].TextValue == {"true": "needs review", "false": "no review"}[row["flag"]]
    assert "Not a medical device" in items["Comment"].TextValue
    assert items["Source"].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert capture.SamplesPerPixel == 3 and capture.BurnedInAnnotation == "YES"


def test_watch_screens_complete_files_once_across_restarts(tmp_path, scoped_model):
    from xscreen.serve import ArrivalScreener

    folder = tmp_path / "incoming"
    folder.mkdir()
    make_film(folder / "done.dcm", 40)
    data = make_film(tmp_path / "growing.dcm", 200, seed=3).read_bytes()
    growing = folder / "growing.dcm"
    growing.write_bytes(data[:1000])  # a digitiser still writing
    out = tmp_path / "results.csv"
    screener = ArrivalScreener(scoped_model, out)
    screener.start()
    watcher = FolderWatcher(folder, screener, settle_s=0.3, poll_s=0.05)
    try:
        assert watcher.poll() == 0  # seen, not yet unchanged for settle_s
        with open(growing, "ab") as fh:
            fh.write(data[1000:2000])
        time.sleep(0.35)
        assert watcher.poll() == 1  # the finished file; the growing one changed since
        assert screener.wait_idle()
        assert [Path(r["path"]).name for r in read_rows(out)] == ["done.dcm"]
        with open(growing, "ab") as fh:
            fh.write(data[2000:])
        watcher.run_until_done()
    finally:
        screener.close()
    rows = read_rows(out)
    assert sorted(Path(r["path"]).name for r in rows) == ["done.dcm", "growing.dcm"]
    assert {r["prediction"] for r in rows} == {"healthy", "covid"}
    assert all(r["sop_instance_uid"] for r in rows)
    # A restart: nothing is screened twice, a new file is screened.
    make_film(folder / "later.dcm", 120, seed=4)
    screener = ArrivalScreener(scoped_model, out)
    screener.start()
    try:
        FolderWatcher(folder, screener, settle_s=0.0, poll_s=0.05).run_until_done()
    finally:
        screener.close()
    assert sorted(Path(r["path"]).name for r in read_rows(out)) == ["done.dcm", "growing.dcm", "later.dcm"]


def test_watch_command_once(tmp_path):
    from conftest import cli_runner, save_png

    from xscreen.cli import main

    folder = tmp_path / "share"
    folder.mkdir()
    make_film(folder / "a.dcm", 120)
    save_png(folder / "b.png", film(200))
    out = tmp_path / "results.csv"
    args = ["watch", str(folder), "--once", "--settle", "0", "--poll", "0.05", "--out", str(out),
            "--model", str(SCOPED_FP32_TFLITE), "-q"]
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["a.dcm"]["prediction"] == "pneumonia" and rows["a.dcm"]["sop_instance_uid"]
    assert rows["b.png"]["prediction"] == "covid" and rows["b.png"]["sop_instance_uid"] == ""
    again = cli_runner().invoke(main, args)
    assert again.exit_code == 0 and len(read_rows(out)) == 2


def test_missing_extra_names_the_pip_command(monkeypatch):
    import importlib.util

    from conftest import cli_runner

    from xscreen.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pynetdicom" else real(name, *a))
    result = cli_runner().invoke(main, ["serve", "--spool", "x"])
    assert result.exit_code == 2
    assert "pip install 'xscreen[serve]'" in result.output + (result.stderr or "")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed (makes the test certificates)")
def test_tls_with_client_certificates(tmp_path, scoped_model):
    import ssl

    from pynetdicom import AE

    from xscreen.serve import TlsFiles

    def certificate(name: str, signer: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        request = ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                   "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"]
        if signer is None:
            subprocess.run([*request, "-x509", "-days", "1", "-out", str(cert)], check=True, capture_output=True)
        else:
            csr = subprocess.run(request, check=True, capture_output=True).stdout
            subprocess.run(["openssl", "x509", "-req", "-days", "1", "-CA", str(signer[0]), "-CAkey", str(signer[1]),
                            "-CAcreateserial", "-copy_extensions", "copy", "-out", str(cert)],
                           input=csr, check=True, capture_output=True)
        return cert, key

    ca = certificate("ca")
    server, client = certificate("xscreen", ca), certificate("modality", ca)
    with serving(tmp_path, scoped_model, tls=TlsFiles(*server, ca=ca[0])) as service:
        port = service.receiver.port
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca[0]))
        context.load_cert_chain(*client)
        ae = AE(ae_title="MODALITY")
        ae.acse_timeout = ae.network_timeout = 2  # the refused handshakes below end fast
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="XSCREEN", tls_args=(context, "127.0.0.1"))
        assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
        assoc.release()
        plain = ae.associate("127.0.0.1", port, ae_title="XSCREEN")  # no TLS: no association
        assert not plain.is_established
        no_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca[0]))  # no client certificate
        refused = ae.associate("127.0.0.1", port, ae_title="XSCREEN", tls_args=(no_cert, "127.0.0.1"))
        assert not refused.is_established


def test_send_to_is_parsed_or_refused_with_the_expected_form():
    assert Destination.parse("PACS@10.0.0.5:104") == Destination("PACS", "10.0.0.5", 104)
    assert Destination.parse("PACS@[::1]:11112") == Destination("PACS", "::1", 11112)
    for bad in ("PACS@host", "10.0.0.5:104", "PACS@host:0", "A" * 17 + "@h:104"):
        with pytest.raises(ValueError, match="AE@HOST:PORT"):
            Destination.parse(bad)


def test_one_spool_one_receiver(tmp_path, scoped_model):
    from xscreen.serve import SpoolInUseError

    with serving(tmp_path, scoped_model):
        with pytest.raises(SpoolInUseError, match="another running xscreen serve"):
            build_service(scoped_model, tmp_path / "other.csv", spool=tmp_path / "spool", port=0)
    service, _ = build_service(scoped_model, tmp_path / "other.csv", spool=tmp_path / "spool", port=0)  # free again
    service.close()


def test_watch_draws_heatmaps_of_flagged_films(tmp_path):
    from conftest import cli_runner, save_png

    from xscreen.cli import main

    folder = tmp_path / "share"
    folder.mkdir()
    save_png(folder / "covid.png", film(200))  # flagged: not healthy
    save_png(folder / "healthy.png", film(20))
    args = ["watch", str(folder), "--once", "--settle", "0", "--out", str(tmp_path / "results.csv"),
            "--model", str(SCOPED_FP32_TFLITE), "--heatmaps", str(tmp_path / "maps"), "-q"]
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["covid.png.heatmap.png"]
    inside = cli_runner().invoke(main, [*args[:-3], "--heatmaps", str(folder / "maps")])
    assert inside.exit_code == 2 and "inside" in inside.output + (inside.stderr or "")
