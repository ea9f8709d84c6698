"""Synthetic test films for the out-of-the-box demo.

Real chest X-rays cannot ship with xscreen (licences, privacy), so ``xscreen demo`` without a
folder writes these: procedurally drawn chest-like images in every input format xscreen reads,
plus one deliberately broken file. They exercise the whole pipeline; **their predictions mean
nothing**, and every file name says ``SYNTHETIC`` so no one mistakes them for patients.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_NOTE = (
    "SYNTHETIC test films written by `xscreen demo`: drawn by a program, not X-rays of anyone. "
    "They show the pipeline working on PNG (8/16-bit), JPEG, DICOM (with the [dicom] extra) and a "
    "broken file; the model's "
    "predictions on them are meaningless. Screen real films with: xscreen run FOLDER\n"
)


SYNTHETIC_SCOPE_NOTE = ("The image scope check is off for them: it calls drawings what they are, not frontal chest "
                        "films (on your own folder, `xscreen demo FOLDER`, it is on).")

DEMO_FOLDER = Path("xscreen-demo")
RESULT_NAME = "xscreen-results"


def write_demo_folder() -> tuple[Path, list[Path]]:
    """Write the synthetic films into ./xscreen-demo, or a new temporary folder when the working folder is read-only."""
    try:
        return DEMO_FOLDER, write_demo_films(DEMO_FOLDER)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="xscreen-demo-"))
        return folder, write_demo_films(folder)


def fresh_result_path(folder: Path) -> Path:
    """A result file that does not exist yet: ``xscreen-results.csv`` (then ``-2``, ``-3``...) in the first
    writable of ``folder``, the working folder and the temporary folder. Never an existing file."""
    for where in (folder, Path.cwd(), Path(tempfile.gettempdir())):
        if os.access(where, os.W_OK):
            break
    for n in range(1, 10_000):
        path = where / (f"{RESULT_NAME}.csv" if n == 1 else f"{RESULT_NAME}-{n}.csv")
        if not path.exists():
            return path
    raise FileExistsError(f"{where} holds 10,000 {RESULT_NAME} files: pass --out")


def synthetic_film(seed: int, size: int = 512) -> np.ndarray:
    """A chest-like grey image: body, two darker lungs, mediastinum, rib arcs, noise. float 0..1."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    body = ((x - 0.5) / 0.42) ** 2 + ((y - 0.55) / 0.5) ** 2 < 1
    film = np.where(body, 0.55, 0.05)
    haze = rng.uniform(0.0, 0.25)  # more haze in the lungs: a crude stand-in for opacity
    for cx in (0.32, 0.68):
        lung = ((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1
        film = np.where(lung, 0.18 + haze * rng.uniform(0.5, 1.0), film)
    film = np.where((np.abs(x - 0.5) < 0.06) & (y > 0.2), 0.8, film)
    for k in range(8):
        rib = np.abs(y - (0.25 + 0.07 * k) - 0.08 * (x - 0.5) ** 2 * 4) < 0.008
        film = np.where(rib & body, film + 0.15, film)
    film = film + rng.normal(0, 0.02, film.shape)
    return np.clip(film, 0, 1)


def write_demo_films(folder: str | Path) -> list[Path]:
    """Write the synthetic films (and a README) into ``folder``; returns the image paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README-SYNTHETIC.txt").write_text(DEMO_NOTE)
    paths = []
    for i in range(3):
        path = folder / f"SYNTHETIC-film-{i + 1}.png"
        Image.fromarray((synthetic_film(i) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    path = folder / "SYNTHETIC-film-4.jpg"
    Image.fromarray((synthetic_film(3, 1024) * 255).astype(np.uint8)).save(path, quality=90)
    paths.append(path)
    path = folder / "SYNTHETIC-film-5-16bit.png"
    # 12-bit detector values in a 16-bit PNG, as many exports from PACS come.
    Image.fromarray((synthetic_film(4) * 4095).astype(np.uint16)).save(path)
    paths.append(path)
    dicom = _write_dicom(folder / "SYNTHETIC-film-6.dcm", synthetic_film(5))
    if dicom:
        paths.append(dicom)
    path = folder / "SYNTHETIC-broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this file was cut short on purpose")
    paths.append(path)
    return paths


def _write_dicom(path: Path, film: np.ndarray) -> Path | None:
    """A MONOCHROME1 DICOM with a rescale and a window, when pydicom is installed."""
    try:
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    except ImportError:
        return None
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "SYNTHETIC^FILM", "SYNTHETIC", "OT"
    ds.Rows, ds.Columns = film.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 1024, 4096
    ds.PixelData = ((1 - film) * 4095).astype(np.uint16).tobytes()  # MONOCHROME1: bone is dark
    save_dicom_file(ds, path)
    return path


def save_dicom_file(ds, path: Path) -> None:
    """Write a conformant DICOM file (preamble, meta header) with pydicom 3 or 2.4+."""
    try:
        ds.save_as(path, enforce_file_format=True)  # pydicom >= 3
    except TypeError:  # pydicom 2.x: encoding flags set by hand, no enforce_file_format
        ds.is_little_endian = True
        ds.is_implicit_VR = ds.file_meta.TransferSyntaxUID.is_implicit_VR
        ds.save_as(path, write_like_original=False)
