"""Decoding chest radiographs into model input: the one place pixels are made.

Training (``xscreen.export``) and screening (``xscreen.runtime``) both call
:func:`decode_radiograph`, so a model sees exactly the same pixels in both.

The preprocessing it implements is named by :data:`PREPROCESSING_ID`, which every exported
model carries in its metadata; the runtime refuses a model that asks for another one.
"""

from __future__ import annotations

import errno
import io
import math
import os
import re
import stat
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._degenerate import blank_reason, shape_reason
from ._scope import dicom_header_reason

# Bump the suffix whenever anything below changes the pixels a model sees.
PREPROCESSING_ID = "xscreen-grey-squash-bilinear-v1"
# The same, then a JPEG quality-75 round trip at the model's input size: the encoding of the cxr3
# training pool, so clean films at run time carry the artefacts the model learned on (measured on the
# bundled fp32 model, full-resolution pneumonia films: recall 0.80 without it, 0.98 with it).
CXR3_PREPROCESSING_ID = "xscreen-grey-squash-bilinear-jpeg75-v1"
# Preprocessing id -> JPEG round-trip quality after resizing (None: no round trip).
PREPROCESSINGS: dict[str, int | None] = {PREPROCESSING_ID: None, CXR3_PREPROCESSING_ID: 75}

# Larger images are refused before decoding: a 20k x 20k film does not exist, a crafted PNG does.
MAX_PIXELS = 120_000_000

# One interpolation, defined once: bilinear with Pillow's antialiasing support when shrinking.
RESAMPLE = Image.Resampling.BILINEAR

# Images larger than this are box-reduced before they are squashed to the model's size (Pillow cannot
# decode PNG or TIFF at reduced scale as it does JPEG), to at least REDUCE_GAP times the model's size per
# side. Films up to this size (every real film we have: the largest is 2,553 px a side, 5.9 M pixels) keep
# the pixels they had before the reduction existed.
REDUCE_ABOVE_PIXELS = 25_000_000
REDUCE_GAP = 4
# Bytes of decoded full-size pixels in memory at once, over every decoding thread of the process: a
# thread whose image does not fit waits until others finish (one image larger than this decodes alone).
# With it, two 10000x11000 16-bit PNGs are screened in 301 MB, not 6,647 MB (benchmarks/memory_bound.py).
DECODE_BUDGET_BYTES = 256 * 2**20
_STRIP_PIXELS = 1 << 20  # high-bit images are scaled to 8 bits this many pixels at a time (float64: 8 MB)

DICOM_EXTENSIONS = (".dcm", ".dicom")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp") + DICOM_EXTENSIONS
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP or DICOM"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_BMP_MAGIC = b"BM"
_BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)  # the DIB header sizes Pillow reads; "BM" alone is text
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
_HIGH_BIT_DTYPES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2", "I": "=i4", "F": "=f4"}
# EXIF Orientation -> the transpose that shows the film upright (as Pillow's ImageOps.exif_transpose).
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_EXIF_ORIENTATION_TAG = 0x0112
_DICOM_MAGIC_OFFSET = 128
_DICOM_MAGIC = b"DICM"


class DecodeError(Exception):
    """A file that cannot be turned into a radiograph; the message is the reason shown to the user."""


class OutOfScopeError(DecodeError):
    """A readable file that is not a frontal chest radiograph (its DICOM header, size or blankness says so)."""


class DecodeBudget:
    """Bytes of decoded pixels allowed in memory at once, shared by threads; an image that does not fit
    waits for others to finish, and one larger than the whole budget decodes alone."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int):
        """Wait until ``nbytes`` fit (or nothing else is held), hold them for the ``with`` block."""
        with self._changed:
            self._changed.wait_for(lambda: self.in_use == 0 or self.in_use + nbytes <= self.max_bytes)
            self.in_use += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()


# One budget for the whole process: the pipeline's threads, the report's and training's all decode under it.
DECODE_BUDGET = DecodeBudget(DECODE_BUDGET_BYTES)


def sniff_format(path: str | os.PathLike) -> str | None:
    """Return ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"`` or ``"dicom"`` from a file's first bytes, or None."""
    with open(path, "rb") as fh:
        head = fh.read(_DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC))
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head[_DICOM_MAGIC_OFFSET:] == _DICOM_MAGIC:  # before TIFF: a DICOM preamble may be a TIFF header
        return "dicom"
    if head.startswith(_TIFF_MAGICS):
        return "tiff"
    if head.startswith(_BMP_MAGIC) and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of a PNG, JPEG, TIFF or BMP file as shown upright (EXIF orientation); from the header,
    except for a PNG whose EXIF may follow its pixels (Pillow then reads them too)."""
    with Image.open(path) as im:
        width, height = im.size
        return (height, width) if _orientation(im) >= 5 else (width, height)


def decode_radiograph(
    path: str | os.PathLike, size: tuple[int, int] | None = None, preprocessing: str = PREPROCESSING_ID,
    *, scope_check: bool = False, budget: DecodeBudget | None = None, facts: dict | None = None,
) -> np.ndarray:
    """Decode a PNG or TIFF (8/16-bit), JPEG, BMP or DICOM file into a grey ``uint8`` array, upright.

    ``size`` is ``(height, width)``; when given, the image is squashed to it (no crop, the aspect
    ratio is not kept, as in the training data) with :data:`RESAMPLE`, then finished as the
    ``preprocessing`` id (a key of :data:`PREPROCESSINGS`, from the model's metadata) says. An EXIF
    orientation (JPEG, PNG, TIFF) is applied. Full-size pixels are decoded under ``budget`` (None:
    the process's :data:`DECODE_BUDGET`). Raises :class:`DecodeError` with a reason a user can act on;
    with ``scope_check``, its subclass :class:`OutOfScopeError` for a DICOM whose header says it is not a
    frontal chest radiograph, or an image too small or too thin to be one (both checked before its
    pixels are decoded), or a blank one (``_degenerate.py``).
    ``facts``, when given, receives what the grey pixels no longer show: ``colour``, the image's
    mean saturation (0 for a grey image; see :func:`colourfulness`), for the scope check.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; known: {', '.join(PREPROCESSINGS)}")
    facts = {} if facts is None else facts
    facts["colour"] = 0.0
    grey = _decode_any(path, size, scope_check, budget or DECODE_BUDGET, facts)
    reason = blank_reason(grey) if scope_check else None
    if reason is not None:
        raise OutOfScopeError(reason)
    quality = PREPROCESSINGS[preprocessing]
    return grey if size is None or quality is None else jpeg_round_trip(grey, quality)


def jpeg_round_trip(grey: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode a grey image as baseline JPEG at ``quality`` (Pillow's libjpeg)."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("L"))


def _decode_any(path: str | os.PathLike, size: tuple[int, int] | None, scope_check: bool,
                budget: DecodeBudget, facts: dict) -> np.ndarray:
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a pipe would block the read below forever
            raise DecodeError("not a regular file (a folder, pipe or device)")
        if info.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        kind = sniff_format(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DecodeError("symlink loop: the link leads back to itself, there is no file") from exc
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise DecodeError(f"broken symlink: its target {os.readlink(path)} does not exist") from exc
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    if kind is None and path.suffix.lower() in DICOM_EXTENSIONS:
        kind = "dicom-without-preamble"  # some writers omit the 128-byte preamble and "DICM"
    if kind is None:
        raise DecodeError(f"not a {FORMAT_NAMES} file (unrecognised content)")
    if kind.startswith("dicom"):
        grey = _decode_dicom(path, scope_check, budget, facts, force=kind != "dicom")
        return grey if size is None else resize_grey(grey, size)
    return _decode_pillow(path, kind, size, scope_check, budget, facts)


def resize_grey(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Squash a grey uint8 array to ``(height, width)`` with the one interpolation xscreen uses."""
    height, width = size
    if grey.shape == (height, width):
        return grey
    return np.asarray(Image.fromarray(grey).resize((width, height), RESAMPLE))


def _decode_pillow(path: Path, kind: str, size: tuple[int, int] | None, scope_check: bool,
                   budget: DecodeBudget, facts: dict) -> np.ndarray:
    name = _PILLOW_FORMATS[kind]
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below replaces Pillow's warning; Pillow still refuses >2x its limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data" and the like: the row says what matters
            with Image.open(path, formats=[name]) as im:
                _check_dimensions(*im.size)
                reason = shape_reason(*im.size) if scope_check else None
                if reason is not None:
                    raise OutOfScopeError(reason)
                if size is not None and im.format == "JPEG":
                    # Decoding at 1/2, 1/4 or 1/8 scale is the biggest saving at full resolution. YCbCr
                    # keeps the colour for the scope check; its Y channel is the grey "L" would give.
                    target = _stored_target(size, _orientation(im))  # a JPEG's EXIF is in its header
                    im.draft("YCbCr", (target[1], target[0]))
                if im.format == "TIFF":
                    _unswap_tiff_size(im)
                with budget.hold(_decoded_bytes(im)):
                    im.load()
                    orientation = _orientation(im)  # a PNG's EXIF may follow its pixels: Pillow loads them to read it
                    target = None if size is None else _stored_target(size, orientation)
                    facts["colour"] = colourfulness(im)
                    grey = _grey_uint8(im, _reduce_factor(im.size, target))
                    im.close()  # free the full-size pixels before the budget lets another image in
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size_words = f" ({int(claimed.group(1)):,} pixels)" if claimed else ""
        raise DecodeError(f"image too large to decode safely: its header claims a huge size{size_words}, "
                          f"over the {MAX_PIXELS:,}-pixel safety limit") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(f"corrupt image: its header is not a valid {name} header") from exc
    except (OSError, SyntaxError, ValueError, struct_error) as exc:  # Pillow's plugins raise these for damaged files
        raise DecodeError(_damage_reason(exc)) from exc
    if orientation in _ORIENTATION:
        grey = np.asarray(Image.fromarray(grey).transpose(_ORIENTATION[orientation]))
    return grey if size is None else resize_grey(grey, size)


def _orientation(im: Image.Image) -> int:
    """The EXIF Orientation (1..8; 1 when absent or unreadable: a damaged EXIF block does not spoil the film)."""
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # Pillow's EXIF parser raises many types for damaged tags
        return 1
    return value if 1 <= value <= 8 else 1


def _unswap_tiff_size(im: Image.Image) -> None:
    """Pillow 13 applies a TIFF's orientation while loading it, but sizes the image upright before it
    decodes the stored rows, which garbles uncompressed films tagged 5-8: give it the stored size (its own
    transpose then turns the film upright, and older Pillow leaves the tag for :func:`_orientation`)."""
    stored = (im.tag_v2.get(256), im.tag_v2.get(257))  # ImageWidth, ImageLength
    if all(isinstance(side, int) for side in stored) and im.size == stored[::-1] != stored:
        im._size = stored


def _stored_target(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The model's ``(height, width)`` in the file's stored pixels: swapped when the film is stored on its side."""
    return (size[1], size[0]) if orientation >= 5 else size


def _decoded_bytes(im: Image.Image) -> int:
    """Memory Pillow holds for the image's pixels once loaded (multi-band images take 4 bytes a pixel)."""
    width, height = im.size
    per_pixel = 1 if im.mode in ("1", "L", "P") else 2 if im.mode.startswith("I;16") else 4
    return width * height * per_pixel


def _reduce_factor(stored: tuple[int, int], target: tuple[int, int] | None) -> int:
    """Box-reduction factor for a very large image (1: none), keeping REDUCE_GAP x the target per side."""
    width, height = stored
    if target is None or width * height <= REDUCE_ABOVE_PIXELS:
        return 1
    return max(1, min(width // (REDUCE_GAP * target[1]), height // (REDUCE_GAP * target[0])))


def _grey_uint8(im: Image.Image, factor: int) -> np.ndarray:
    """A loaded image as grey uint8, box-reduced by ``factor``; converted to 8 bits once, strip by strip."""
    if im.mode in _HIGH_BIT_DTYPES:
        return _scaled_strips(im, factor)
    if factor > 1:
        im = im.reduce(factor) if im.mode in ("L", "LA", "RGB", "RGBA") else im.convert("RGBA").reduce(factor)
    if im.mode == "L":
        return np.asarray(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become black, like the film border, instead of their hidden colour.
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("L"))
    return np.asarray(im.convert("L"))


def _scaled_strips(im: Image.Image, factor: int) -> np.ndarray:
    """A 16/32-bit or float image mapped by its own range onto 0..255 (as :func:`scale_to_uint8`), a strip
    of rows at a time so no full-size float copy exists; box-reduced by ``factor`` before scaling."""
    width, height = im.size
    rows = max(1, _STRIP_PIXELS // width // factor) * factor

    def strips():
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            # tobytes + frombuffer: numpy's own conversion of a Pillow image holds several copies of it
            raw = np.frombuffer(im.crop((0, top, width, bottom)).tobytes(), dtype=_HIGH_BIT_DTYPES[im.mode])
            yield raw.reshape(bottom - top, width)

    ranges = [(float(strip.min()), float(strip.max())) for strip in strips()]  # Pillow's getextrema refuses I;16B
    if not all(math.isfinite(v) for r in ranges for v in r):
        raise DecodeError("pixel values are not finite numbers (NaN or infinity): not an image")
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return np.concatenate([_scale_range(_box_mean(strip.astype(np.float64), factor) if factor > 1 else strip, lo, hi)
                           for strip in strips()])


def _box_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (smaller ones at the right and bottom edges)."""
    rows = np.arange(0, values.shape[0], factor)
    cols = np.arange(0, values.shape[1], factor)
    sums = np.add.reduceat(np.add.reduceat(values, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(rows, append=values.shape[0]), np.diff(cols, append=values.shape[1]))
    return sums / counts


def _damage_reason(exc: Exception) -> str:
    """Plain words for a decoder's exception about damaged data."""
    text = str(exc).lower()
    if isinstance(exc, EOFError) or any(w in text for w in ("truncated", "end of file", "eof", "ended prematurely")):
        return "truncated file: it ends before all of its pixels"
    if "broken" in text or "crc" in text or "checksum" in text:
        return "corrupt or truncated image: its compressed data is damaged"
    return "corrupt image: its pixel data cannot be decoded"


def _check_dimensions(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise DecodeError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise DecodeError(
            f"image of {width}x{height} pixels exceeds the {MAX_PIXELS:,}-pixel safety limit"
        )


COLOUR_SAMPLE = 64  # px: the colour measure looks at a thumbnail; a tint is not a detail


def colourfulness(im: Image.Image) -> float:
    """Mean saturation, max(R, G, B) - min(R, G, B) over 255, of a small copy: 0 for any grey image.

    A radiograph is grey whatever its file's mode (grey films are often saved as RGB); a photo is not.
    The image is box-reduced before its RGB copy is made, so a huge colour file costs no full-size copy.
    """
    if im.mode not in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return 0.0
    factor = max(1, min(im.size) // COLOUR_SAMPLE)
    small = im.reduce(factor) if factor > 1 and im.mode in ("RGB", "RGBA") else im
    small = small.convert("RGB")
    small.thumbnail((COLOUR_SAMPLE, COLOUR_SAMPLE))
    rgb = np.asarray(small, dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0)


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an image's own value range (16-bit PNG, DICOM after LUTs) linearly onto 0..255."""
    values = np.asarray(values)
    return _scale_range(values, float(values.min()), float(values.max()))


def _scale_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` mapped linearly from ``lo..hi`` onto 0..255 in float64, a few rows at a time."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DecodeError("pixel values are not finite numbers (NaN or infinity): not an image")
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    out = np.empty(values.shape, dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // max(1, values[:1].size))
    for top in range(0, values.shape[0], rows):
        scaled = (np.asarray(values[top: top + rows], dtype=np.float64) - lo) * (255.0 / (hi - lo))
        out[top: top + rows] = np.clip(np.rint(scaled), 0, 255)
    return out


_pydicom_lock = threading.Lock()


_pydicom_import_lock = threading.Lock()


def _import_pydicom():
    try:
        # One thread at a time: pydicom's package imports are circular, and a second thread importing it
        # while the first is still running its __init__ gets a partially initialised module.
        with _pydicom_import_lock:
            import pydicom
    except ImportError as exc:
        raise DecodeError(
            "DICOM support is not installed: pip install 'xscreen[dicom]'"
        ) from exc
    # pydicom warns about each odd header value; the row's reason says what matters, so its
    # warnings (printed with site-packages paths) must not reach the user's terminal.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
    return pydicom


# Words in pydicom's errors (2.x and 3.x) that mean a codec is missing, not that the file is damaged.
_MISSING_CODEC = re.compile(r"missing (required )?dependenc|no (available )?(pixel data )?(handler|plugin)|"
                            r"plugins are missing|not installed|unable to decompress", re.IGNORECASE)


def _decode_dicom(path: Path, scope_check: bool, budget: DecodeBudget, facts: dict,
                  force: bool = False) -> np.ndarray:
    pydicom = _import_pydicom()
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=force)
        has_pixels = "PixelData" in ds
        columns, rows = _dicom_int(ds, "Columns", 0), _dicom_int(ds, "Rows", 0)
        frames = _dicom_int(ds, "NumberOfFrames", 1) or 1
        samples = _dicom_int(ds, "SamplesPerPixel", 1) or 1
    except DecodeError:
        raise
    except Exception as exc:  # pydicom raises many types for a damaged header
        raise DecodeError(f"unreadable DICOM header: {_dicom_header_reason(exc)}") from exc
    try:
        reason = dicom_header_reason(ds) if scope_check else None
    except Exception as exc:  # pydicom reads tags lazily: a damaged one raises only when the rules read it
        raise DecodeError(f"unreadable DICOM header: {_dicom_header_reason(exc)}") from exc
    if reason is not None:
        raise OutOfScopeError(reason)
    if not has_pixels:
        if force:
            raise DecodeError(f"not a {FORMAT_NAMES} file (a .dcm name, but no DICOM image inside)")
        raise DecodeError("DICOM file has no pixel data (a report or structured document?)")
    _check_dimensions(columns, rows)
    reason = shape_reason(columns, rows) if scope_check else None
    if reason is not None:
        raise OutOfScopeError(reason)
    if force:
        _assume_transfer_syntax(ds)
    # The stored frames (up to 4 bytes a sample) and the float64 LUT output of one frame.
    with budget.hold(columns * rows * (frames * samples * 4 + 8)):
        return _dicom_grey(ds, frames, samples, apply_modality_lut, apply_voi_lut, facts)


def _dicom_grey(ds, frames: int, samples: int, apply_modality_lut, apply_voi_lut, facts: dict) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        if _is_compressed(syntax) and _MISSING_CODEC.search(str(exc)):
            raise DecodeError(f"compressed DICOM ({name}) without its codec: pip install 'xscreen[dicom]'") from exc
        raise DecodeError(f"cannot decode DICOM pixel data ({name}): {_dicom_pixel_reason(exc)}") from exc

    if frames > 1:
        pixels = pixels[0]  # multi-frame: screen the first frame
    if samples > 1:
        colour = Image.fromarray(scale_to_uint8(pixels))
        facts["colour"] = colourfulness(colour)
        return np.asarray(colour.convert("L"))
    with _pydicom_lock:  # LUT helpers are not documented as thread-safe
        values = apply_modality_lut(pixels, ds)
        values = apply_voi_lut(values, ds)
    grey = scale_to_uint8(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        grey = 255 - grey  # MONOCHROME1 stores bone dark; invert after windowing, as the standard says
    return grey


def _is_compressed(syntax) -> bool:
    """Whether a transfer syntax UID names a compressed one; False for a UID that is no transfer syntax at all."""
    try:
        return bool(getattr(syntax, "is_compressed", False))
    except ValueError:  # pydicom: "UID is not a transfer syntax" (found by benchmarks/fuzz.py)
        return False


def _assume_transfer_syntax(ds) -> None:
    """A file without a meta header names no transfer syntax: it is the encoding pydicom read it in."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (ds.is_implicit_VR, ds.is_little_endian))
    ds.file_meta = meta if meta is not None else FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                      ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _dicom_int(ds, keyword: str, default: int) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise DecodeError(f"damaged DICOM header: {keyword} should be a number but holds {str(value)!r}") from None


def _dicom_header_reason(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or "end of file" in text.lower() or "truncated" in text.lower():
        return "the file ends inside its header (truncated)"
    bad_number = re.search(r"invalid literal for (int|float)\(\)[^:]*: (.*)", text)
    if bad_number:
        return f"a field that must hold a number holds {bad_number.group(2)}"
    if "value representation" in text.lower() or " vr " in f" {text.lower()} ":
        return "a field has an invalid value representation (VR)"
    return "its tags cannot be parsed (damaged or not DICOM)"


def _dicom_pixel_reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "truncat" in text or "shorter than" in text or "length" in text or "expected" in text:
        return "the pixel data is shorter than its header says (truncated file)"
    return "the pixel data does not match its header"
