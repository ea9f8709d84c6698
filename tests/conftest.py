"""Fixture images generated in code, and the committed fixture models (see fixtures/make_models.py).

The brightness models classify by mean grey level: < 85 healthy, 85..170 pneumonia, > 170 covid,
so a test can say what the right answer is. The scoped models add a cam and a scope output: a
:func:`film` (a centre 60 levels brighter than its border) is in scope, its negative and noise are not.
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xscreen.runtime._demo import save_dicom_file

MODELS = Path(__file__).parent / "fixtures" / "models"
FP32_TFLITE = MODELS / "brightness_fp32.tflite"
INT8_TFLITE = MODELS / "brightness_int8.tflite"
FP32_ONNX = MODELS / "brightness_fp32.onnx"
THIRD_PARTY_TFLITE = MODELS / "third_party_b1.tflite"  # no metadata, batch fixed at 1, 24x20
THIRD_PARTY_NCHW_ONNX = MODELS / "third_party_nchw_rgb.onnx"  # no metadata, (N, 3, 24, 20)
# The same rule built like a notebook's model: no metadata, (N, 3, 24, 20) in [0, 1], logits out.
THIRD_PARTY_UNIT_LOGITS_ONNX = MODELS / "third_party_unit_logits.onnx"
LABEL_MISMATCH_TFLITE = MODELS / "label_mismatch.tflite"
OTHER_PREPROCESSING_TFLITE = MODELS / "other_preprocessing.tflite"
SCOPED_FP32_TFLITE = MODELS / "scoped_fp32.tflite"  # outputs: probabilities, cam (N, 4, 4, 3), scope (N, 2)
SCOPED_INT8_TFLITE = MODELS / "scoped_int8.tflite"
SCOPED_FP32_ONNX = MODELS / "scoped_fp32.onnx"  # the same, its outputs in another order
# ONNX is an extra: without onnxruntime its tests skip instead of failing.
needs_onnxruntime = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                       reason="onnxruntime not installed (pip install 'xscreen[onnx]')")
ONNX_MODEL = pytest.param(FP32_ONNX, marks=needs_onnxruntime, id="brightness_fp32.onnx")
CONTRACT_MODELS = [FP32_TFLITE, INT8_TFLITE, ONNX_MODEL]
SCOPED_MODELS = [SCOPED_FP32_TFLITE, SCOPED_INT8_TFLITE,
                 pytest.param(SCOPED_FP32_ONNX, marks=needs_onnxruntime, id="scoped_fp32.onnx")]
LABELS = ("healthy", "pneumonia", "covid")
# Flat grey levels and the label the brightness models must give them.
LEVELS = {10: "healthy", 60: "healthy", 128: "pneumonia", 150: "pneumonia", 200: "covid", 245: "covid"}


def grey(value: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A flat uint8 image, ``size`` = (height, width)."""
    return np.full(size, value, dtype=np.uint8)


def two_tone(level: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A grey image of mean ``level`` that is not blank: its left half 10 levels darker, its right half 10 lighter."""
    pixels = grey(level, size).astype(np.int16)
    pixels[:, : size[1] // 2] -= 10
    pixels[:, size[1] // 2:] += 10
    return np.clip(pixels, 0, 255).astype(np.uint8)


def film(level: int, size: tuple[int, int] = (64, 64), noise: float = 5.0, seed: int = 0) -> np.ndarray:
    """What the scoped fixture models call a film: border at ``level``, the middle half 60 levels brighter."""
    height, width = size
    pixels = np.full(size, level, dtype=np.float64)
    pixels[height // 4: height - height // 4, width // 4: width - width // 4] += 60
    pixels += np.random.default_rng(seed).normal(0, noise, size)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """Uniform random pixels: far from any film."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def save_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def png_bytes(pixels: np.ndarray, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 8-bit grey pixels, with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def write_dicom(path: Path, raw: np.ndarray | None, *, photometric: str = "MONOCHROME2",
                slope: float = 1.0, intercept: float = 0.0, window: tuple[float, float] | None = None,
                compress: bool = False) -> Path:
    """A DICOM file built with pydicom: ``raw`` uint16 (rows, cols) or (frames, rows, cols); None: no pixels."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Test^Fixture"
    if raw is not None:
        frames = raw if raw.ndim == 3 else None
        ds.Rows, ds.Columns = raw.shape[-2:]
        if frames is not None:
            ds.NumberOfFrames = len(frames)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = raw.astype("<u2").tobytes()
        if compress:
            ds.compress(RLELossless, encoding_plugin="pydicom")
    save_dicom_file(ds, path)
    return path


# The DICOM fixture: raw 0..1000 left to right; with slope 2 and intercept -1000 that is -1000..1000,
# and a window centred on 0, 1000 wide, clips the left and right quarters.
DICOM_RAW = np.tile(np.linspace(0, 1000, 64).astype(np.uint16), (32, 1))
DICOM_RESCALE = dict(slope=2.0, intercept=-1000.0, window=(0.0, 1000.0))


@pytest.fixture(scope="session", autouse=True)
def model_probe_cache(tmp_path_factory) -> Path:
    """One cache of checked model files for the session (``xscreen/runtime/_probe.py``), never the user's:
    each fixture model is opened in a child process once per session, and CLI subprocesses share it."""
    folder = tmp_path_factory.mktemp("xscreen-cache")
    saved = os.environ.get("XSCREEN_CACHE_DIR")
    os.environ["XSCREEN_CACHE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("XSCREEN_CACHE_DIR", None)
    else:
        os.environ["XSCREEN_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def brightness_folder(tmp_path_factory) -> dict[str, str]:
    """A folder of good images in every format, path -> the label the brightness models must give."""
    root = tmp_path_factory.mktemp("scans")
    (root / "nested" / "deeper").mkdir(parents=True)
    expected = {}
    for i, (level, label) in enumerate(LEVELS.items()):
        folder = [root, root / "nested", root / "nested" / "deeper"][i % 3]
        expected[str(save_png(folder / f"grey{level:03d}.png", two_tone(level)))] = label
        jpeg = folder / f"grey{level:03d}.jpg"
        jpeg.write_bytes(png_bytes(two_tone(level, (300, 260)), "JPEG", quality=90))
        expected[str(jpeg)] = label
    return expected


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory) -> dict[str, str]:
    """Files that cannot be screened, path -> words the error reason must contain."""
    root = tmp_path_factory.mktemp("bad")
    good_jpeg = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8), "JPEG")
    good_png = png_bytes(np.random.default_rng(1).integers(0, 255, (200, 200), dtype=np.uint8))
    files = {
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        "truncated.png": (good_png[: len(good_png) // 2], "truncated"),
        "empty.png": (b"", "empty file"),
        "text.png": (b"this is not an image\n", "not a PNG, JPEG, TIFF, BMP or DICOM"),
        "bomb.png": (png_header_claiming(100_000, 100_000), "too large"),
        "oversized.png": (png_header_claiming(12_000, 12_000), "12000x12000 pixels exceeds"),
    }
    expected = {}
    for name, (data, reason) in files.items():
        (root / name).write_bytes(data)
        expected[str(root / name)] = reason
    if _has_pydicom():
        expected[str(write_dicom(root / "report.dcm", None))] = "no pixel data"
    return expected


def _has_pydicom() -> bool:
    return importlib.util.find_spec("pydicom") is not None


def cli_runner(**kwargs) -> CliRunner:
    """A CliRunner with stderr apart from stdout: click < 8.2 (Python 3.9) mixes them unless told."""
    try:
        return CliRunner(mix_stderr=False, **kwargs)
    except TypeError:  # click >= 8.2 always keeps them apart and dropped the argument
        return CliRunner(**kwargs)
