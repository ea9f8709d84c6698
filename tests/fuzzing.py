"""The fuzz harness shared by tests/test_fuzz.py (short, seeded) and benchmarks/fuzz.py (long).

Seeds are small, valid files made in code (PNG 8/16-bit, JPEG, TIFF 8/16-bit, BMP, DICOM; the fixture
models). A case is a seed with a few mutations: truncations, bit flips, overwritten, inserted or deleted
bytes. Images are decoded in this process: the outcome must be pixels or a DecodeError. Model files are
loaded and run once in a worker process, so a native crash (SIGSEGV, SIGABRT) or a hang is seen, counted
and survived: the outcome must be a model or one clear error (ModelContractError, or another ValueError).
"""

from __future__ import annotations

import importlib.util
import io
import os
import select
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xscreen.runtime import DecodeError, decode_radiograph

MODELS = Path(__file__).parent / "fixtures" / "models"
MODEL_SEEDS = ("brightness_int8.tflite", "brightness_fp32.tflite", "scoped_int8.tflite", "brightness_fp32.onnx",
               "scoped_fp32.onnx")
SIZE = (24, 20)
LOAD_TIMEOUT_S = 20.0


def seed_images() -> dict[str, bytes]:
    """Small valid files of every format the decoder reads, name (with its suffix) -> bytes."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:48]
    eight = ((x * 5 + y * 3) % 256).astype(np.uint8)
    sixteen = (eight.astype(np.uint16) * 250 + rng.integers(0, 200, eight.shape)).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6

    def saved(pixels: np.ndarray, fmt: str, **params) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, **params)
        return buffer.getvalue()

    seeds = {
        "eight.png": saved(eight, "PNG"),
        "sixteen.png": saved(sixteen, "PNG"),
        "exif.png": saved(eight, "PNG", exif=exif.tobytes()),
        "film.jpg": saved(eight, "JPEG", quality=90),
        "exif.jpg": saved(eight, "JPEG", quality=90, exif=exif.tobytes()),
        "progressive.jpg": saved(eight, "JPEG", quality=80, progressive=True),
        "eight.tif": saved(eight, "TIFF"),
        "sixteen_lzw.tif": saved(sixteen, "TIFF", compression="tiff_lzw"),
        "exif_deflate.tif": saved(eight, "TIFF", compression="tiff_adobe_deflate", exif=exif.tobytes()),
        "grey.bmp": saved(eight, "BMP"),
        "rgb.bmp": saved(np.stack([eight] * 3, axis=-1), "BMP"),
    }
    dicom = _dicom_seed(sixteen)
    if dicom is not None:
        seeds["film.dcm"] = dicom
    return seeds


def _dicom_seed(pixels: np.ndarray) -> bytes | None:
    """A DICOM file of ``pixels``; None without pydicom (the ``[dicom]`` extra)."""
    if importlib.util.find_spec("pydicom") is None:
        return None
    from conftest import write_dicom

    with tempfile.TemporaryDirectory() as folder:
        return write_dicom(Path(folder) / "seed.dcm", pixels).read_bytes()


def seed_models() -> dict[str, bytes]:
    return {name: (MODELS / name).read_bytes() for name in MODEL_SEEDS}


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply ``(kind, position, value)`` mutations: 0 truncate, 1 flip a bit, 2 set a byte, 3 insert, 4 delete."""
    out = bytearray(data)
    for kind, position, value in ops:
        if not out:
            break
        pos = position % len(out)
        if kind == 0:
            del out[pos:]
        elif kind == 1:
            out[pos] ^= 1 << (value % 8)
        elif kind == 2:
            out[pos] = value % 256
        elif kind == 3:
            out[pos:pos] = bytes([value % 256]) * (1 + value % 7)
        else:
            del out[pos: pos + 1 + value % 16]
    return bytes(out)


def decode_case(path: Path, scope_check: bool) -> str:
    """Decode one case: ``"ok"`` or ``"DecodeError: ..."``; any other exception propagates (a finding)."""
    try:
        pixels = decode_radiograph(path, SIZE, scope_check=scope_check)
    except DecodeError as exc:
        assert str(exc), "a DecodeError without a reason"
        return f"DecodeError: {exc}"
    assert pixels.shape == SIZE and pixels.dtype == np.uint8
    return "ok"


_WORKER = r"""
import os
import sys
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever the runtimes print goes to stderr, not into the answers
import numpy as np
from xscreen.runtime import load_model
from xscreen.runtime._contract import ModelContractError
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        model = load_model(path)
        height, width = model.input_size
        model.predict(np.zeros((1, height, width, 1), np.uint8))
        answer = "ok"
    except (ModelContractError, ValueError) as exc:
        message = " ".join(str(exc).split())
        answer = f"clear {type(exc).__name__}: {message}" if message else f"unclear {type(exc).__name__}: no message"
    except Exception as exc:
        answer = f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
    print(answer, file=answers, flush=True)
"""


@dataclass
class ModelOutcome:
    kind: str  # "ok", "clear", "unclear", "unexpected", "crash", "hang"
    detail: str


class ModelLoader:
    """A worker process that loads model files one by one; restarted after a crash or a hang."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.crashes: list[tuple[str, str]] = []  # (case file, what happened)
        self._child: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        # XSCREEN_NO_MODEL_PROBE: this worker is itself the process that may crash, so it measures the runtime
        # behind the structural check; load_model's child-process probe (tests/test_model_probe.py) is left out.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                          os.environ.get("PYTHONPATH", "")]),
               "XSCREEN_NO_MODEL_PROBE": "1"}
        return subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env, bufsize=1)

    def load(self, data: bytes, suffix: str, name: str = "case") -> ModelOutcome:
        path = self.folder / f"{name}{suffix}"
        path.write_bytes(data)
        if self._child is None or self._child.poll() is not None:
            self._child = self._start()
        child = self._child
        child.stdin.write(f"{path}\n")
        child.stdin.flush()
        ready, _, _ = select.select([child.stdout], [], [], LOAD_TIMEOUT_S)
        line = child.stdout.readline() if ready else None
        if line:
            kind, _, detail = line.rstrip("\n").partition(" ")
            return ModelOutcome(kind, detail)
        if line is None:
            child.kill()
            child.wait()
            outcome = ModelOutcome("hang", f"no answer in {LOAD_TIMEOUT_S:g} s")
        else:
            code = child.wait()
            outcome = ModelOutcome("crash", f"worker died with exit code {code}" + (
                f" (signal {-code})" if code < 0 else ""))
        self._child = None
        return outcome

    def close(self) -> None:
        if self._child is not None:
            self._child.stdin.close()
            self._child.wait(10)
            self._child = None
