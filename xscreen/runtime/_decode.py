"""Decoding chest radiographs into model input: the one place pixels are made.

Training (``xscreen.export``) and screening (``xscreen.runtime``) both call
:func:`decode_radiograph`, so a model sees exactly the same pixels in both.

The preprocessing it implements is named by :data:`PREPROCESSING_ID`, which every exported
model carries in its metadata; the runtime refuses a model that asks for another one.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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

DICOM_EXTENSIONS = (".dcm", ".dicom")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg") + DICOM_EXTENSIONS

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_MAGIC_OFFSET = 128
_DICOM_MAGIC = b"DICM"


class DecodeError(Exception):
    """A file that cannot be turned into a radiograph; the message is the reason shown to the user."""


class OutOfScopeError(DecodeError):
    """A readable file that is not a frontal chest radiograph (its DICOM header says so)."""


def sniff_format(path: str | os.PathLike) -> str | None:
    """Return ``"png"``, ``"jpeg"`` or ``"dicom"`` from a file's first bytes, or None."""
    with open(path, "rb") as fh:
        head = fh.read(_DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC))
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head[_DICOM_MAGIC_OFFSET:] == _DICOM_MAGIC:
        return "dicom"
    return None


def decode_radiograph(
    path: str | os.PathLike, size: tuple[int, int] | None = None, preprocessing: str = PREPROCESSING_ID,
    *, scope_check: bool = False, facts: dict | None = None,
) -> np.ndarray:
    """Decode a PNG (8/16-bit), JPEG or DICOM file into a grey ``uint8`` array.

    ``size`` is ``(height, width)``; when given, the image is squashed to it (no crop, the aspect
    ratio is not kept, as in the training data) with :data:`RESAMPLE`, then finished as the
    ``preprocessing`` id (a key of :data:`PREPROCESSINGS`, from the model's metadata) says.
    Raises :class:`DecodeError` with a reason a user can act on; with ``scope_check``, its subclass
    :class:`OutOfScopeError` for a DICOM whose header says it is not a frontal chest radiograph
    (checked before its pixels are decoded).
    ``facts``, when given, receives what the grey pixels no longer show: ``colour``, the image's
    mean saturation (0 for a grey image; see :func:`colourfulness`), for the scope check.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; known: {', '.join(PREPROCESSINGS)}")
    facts = {} if facts is None else facts
    facts["colour"] = 0.0
    grey = _decode_any(path, size, scope_check, facts)
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
                facts: dict) -> np.ndarray:
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
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    if kind is None and path.suffix.lower() in DICOM_EXTENSIONS:
        kind = "dicom-without-preamble"  # some writers omit the 128-byte preamble and "DICM"
    if kind is None:
        raise DecodeError("not a PNG, JPEG or DICOM file (unrecognised content)")
    if kind.startswith("dicom"):
        grey = _decode_dicom(path, scope_check, facts, force=kind != "dicom")
        return grey if size is None else resize_grey(grey, size)
    return _decode_pillow(path, size, facts)


def resize_grey(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Squash a grey uint8 array to ``(height, width)`` with the one interpolation xscreen uses."""
    height, width = size
    if grey.shape == (height, width):
        return grey
    return np.asarray(Image.fromarray(grey).resize((width, height), RESAMPLE))


def _decode_pillow(path: Path, size: tuple[int, int] | None, facts: dict) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below replaces Pillow's warning; Pillow still refuses >2x its limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_dimensions(*im.size)
                if size is not None and im.format == "JPEG":
                    # Decoding at 1/2, 1/4 or 1/8 scale is the biggest saving at full resolution. YCbCr
                    # keeps the colour for the scope check; its Y channel is the grey "L" would give.
                    im.draft("YCbCr", (size[1], size[0]))
                im.load()
                facts["colour"] = colourfulness(im)
                grey = _to_grey_uint8(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size_words = f" ({int(claimed.group(1)):,} pixels)" if claimed else ""
        raise DecodeError(f"image too large to decode safely: its header claims a huge size{size_words}, "
                          f"over the {MAX_PIXELS:,}-pixel safety limit") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("corrupt image: its header is not a valid PNG or JPEG header") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(_damage_reason(exc)) from exc
    return grey if size is None else resize_grey(grey, size)


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
    """
    if im.mode not in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return 0.0
    small = im.convert("RGB")
    small.thumbnail((COLOUR_SAMPLE, COLOUR_SAMPLE))
    rgb = np.asarray(small, dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean() / 255.0)


def _to_grey_uint8(im: Image.Image) -> np.ndarray:
    if im.mode == "L":
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return scale_to_uint8(np.asarray(im))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become black, like the film border, instead of their hidden colour.
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(black, rgba).convert("L"))
    return np.asarray(im.convert("L"))


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an image's own value range (16-bit PNG, DICOM after LUTs) linearly onto 0..255."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


_pydicom_lock = threading.Lock()


def _import_pydicom():
    try:
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


def _decode_dicom(path: Path, scope_check: bool, facts: dict, force: bool = False) -> np.ndarray:
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
    reason = dicom_header_reason(ds) if scope_check else None
    if reason is not None:
        raise OutOfScopeError(reason)
    if not has_pixels:
        if force:
            raise DecodeError("not a PNG, JPEG or DICOM file (a .dcm name, but no DICOM image inside)")
        raise DecodeError("DICOM file has no pixel data (a report or structured document?)")
    _check_dimensions(columns, rows)
    if force:
        _assume_transfer_syntax(ds)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        if getattr(syntax, "is_compressed", False) and _MISSING_CODEC.search(str(exc)):
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
