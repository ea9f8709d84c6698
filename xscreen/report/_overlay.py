"""Heatmap overlays: the film in grey, the predicted class's evidence in colour, the verdict written on it.

Pillow only: the colour map is a 256-entry table interpolated from a few anchors of Google's
"turbo" map (dark blue = little evidence, red = the strongest), so no matplotlib is needed.
Evidence is also the opacity: where the model saw nothing, the film shows through unchanged.
"""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._maps import positive_evidence, upsample_bilinear

HEATMAP_MAX_SIDE = 1024  # heatmap PNGs: the film at its size, at most this many pixels on its long side
THUMBNAIL_MAX_SIDE = 256  # report thumbnails
MIN_SIDE = 256  # smaller films are enlarged so the caption stays readable
# A 3 x 2000 film would make a 1 x 256 thumbnail, drawn 200 px wide: 51,000 px tall. Thumbnails
# are padded with black to at most this ratio of long to short side.
THUMBNAIL_MAX_ASPECT = 3.0
MAX_OPACITY = 0.6  # of the colour where the evidence is strongest
# (position, R, G, B): approximate samples of the turbo colour map.
_TURBO_ANCHORS = np.array([
    (0.00, 48, 18, 59), (0.10, 70, 98, 216), (0.20, 62, 156, 254), (0.30, 24, 214, 203),
    (0.40, 70, 247, 131), (0.50, 164, 252, 60), (0.60, 225, 221, 55), (0.70, 254, 163, 49),
    (0.80, 239, 90, 17), (0.90, 194, 36, 3), (1.00, 122, 4, 3),
], dtype=np.float64)
COLOUR_MAP = np.stack([
    np.interp(np.linspace(0, 1, 256), _TURBO_ANCHORS[:, 0], _TURBO_ANCHORS[:, channel])
    for channel in (1, 2, 3)
], axis=1).round().astype(np.uint8)  # (256, 3)
_CHANNEL_LUTS = [COLOUR_MAP[:, c].tolist() for c in range(3)]
_OPACITY_LUT = np.rint(np.arange(256) * MAX_OPACITY).astype(int).tolist()
# A PNG text key marks files xscreen wrote, so that a later run may replace them and nothing else.
PNG_MARK = "xscreen-heatmap-of"


def render_overlay(film: np.ndarray, heatmap: np.ndarray, caption: str, max_side: int,
                   max_aspect: float | None = None) -> Image.Image:
    """An RGB image of ``film`` (grey uint8, any size) under ``heatmap`` (raw CAM, h x w), captioned.

    The film is shrunk to at most ``max_side`` pixels on its long side, or enlarged to
    :data:`MIN_SIDE` when it is smaller (aspect kept); the heatmap,
    which lives in the squashed model frame, is stretched bilinearly to the film, so each cell
    lands on the part of the film it saw. With ``max_aspect``, a film longer than that ratio is
    centred on a black canvas of that ratio (the caption goes on the canvas).
    """
    grey = Image.fromarray(film)
    long_side = max(grey.size)
    scale = max_side / long_side if long_side > max_side else max(1.0, min(max_side, MIN_SIDE) / long_side)
    if scale != 1.0:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           Image.Resampling.BILINEAR, reducing_gap=2.0)
    evidence = upsample_bilinear(positive_evidence(heatmap), (grey.height, grey.width))
    level = Image.fromarray(np.rint(evidence * 255).astype(np.uint8), "L")
    # Pillow's C loops from here: the look-up tables colour each level, the opacity follows it.
    colour = Image.merge("RGB", [level.point(_CHANNEL_LUTS[c]) for c in range(3)])
    blended = Image.composite(colour, grey.convert("RGB"), level.point(_OPACITY_LUT))
    if max_aspect is not None:
        blended = _pad_to_aspect(blended, max_aspect)
    _write_caption(blended, caption)
    return blended


def _pad_to_aspect(image: Image.Image, max_aspect: float) -> Image.Image:
    """``image`` centred on a black canvas whose long side is at most ``max_aspect`` times its short side."""
    width, height = image.size
    if max(width, height) <= max_aspect * min(width, height):
        return image
    size = ((width, max(height, round(width / max_aspect))) if width > height
            else (max(width, round(height / max_aspect)), height))
    canvas = Image.new("RGB", size)
    canvas.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def _write_caption(image: Image.Image, caption: str) -> None:
    """The caption in white on a black band across the top, its font shrunk until it fits the width."""
    draw = ImageDraw.Draw(image)
    size = max(10, image.height // 24)
    font = _font(size)
    while (isinstance(font, ImageFont.FreeTypeFont) and size > 6
           and draw.textlength(caption, font=font) > image.width - size // 2):
        size -= 1
        font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
    pad = max(2, size // 4)
    draw.rectangle((0, 0, min(image.width, right - left + 2 * pad), bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), caption, fill=(255, 255, 255), font=font)


@cache
def _font(size: int):
    """Pillow's default font at ``size`` pixels (Pillow >= 10.1), or its one bitmap size before that."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def caption_for(prediction: str, probability: float, flag: bool | None) -> str:
    """``covid 0.99, flagged for review``: what the overlay says about its film."""
    verdict = {True: ", flagged for review", False: ", not flagged", None: ""}[flag]
    return f"{prediction} {probability:.2f}{verdict}"


def encode_thumbnail(image: Image.Image) -> bytes:
    """A small JPEG of an overlay (a few KB), for inlining into the report."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80, optimize=True)
    return buffer.getvalue()


def save_heatmap_png(image: Image.Image, path: Path, source: str) -> None:
    """Write an overlay as PNG, marked as xscreen's (see :func:`heatmap_path`)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_MARK, source)
    # Level 1: a sixth of the default's CPU time for 14 % more bytes (measured on 1,024 px overlays).
    image.save(path, format="PNG", pnginfo=info, compress_level=1)


class HeatmapNames:
    """Unique, portable PNG names in one folder, derived from the films' paths.

    ``scans/ward 3/film.png`` under root ``scans`` becomes ``ward 3__film.png.heatmap.png``; the
    original extension stays so ``a.png`` and ``a.jpg`` do not collide. A name already used in
    this run, or held by a file xscreen did not write for this film, gets ``-2``, ``-3``... so a
    user's own file is never overwritten; a heatmap of the same film from an earlier run is replaced.
    """

    _UNSAFE = str.maketrans({c: "_" for c in '<>:"|?*\\\0'})  # not allowed in Windows file names
    _MAX_STEM = 180

    def __init__(self, folder: Path, root: Path | None) -> None:
        self.folder = folder
        self.root = root
        self._taken: set[str] = set()

    def path_for(self, source: str) -> Path:
        stem = self._stem(source)
        candidate, n = f"{stem}.heatmap.png", 1
        while candidate.lower() in self._taken or not _replaceable(self.folder / candidate, source):
            n += 1
            candidate = f"{stem}-{n}.heatmap.png"
        self._taken.add(candidate.lower())  # case-insensitive file systems (a USB stick) too
        return self.folder / candidate

    def _stem(self, source: str) -> str:
        path = Path(source)
        try:
            relative = path.resolve().relative_to(self.root) if self.root else Path(path.name)
        except ValueError:
            relative = Path(path.name)
        stem = "__".join(part for part in relative.parts if part not in ("/", "..")).translate(self._UNSAFE)
        stem = "".join(c if c.isprintable() else "_" for c in stem).lstrip(".") or "film"
        return stem if len(stem) <= self._MAX_STEM else stem[-self._MAX_STEM:]


def _replaceable(path: Path, source: str) -> bool:
    """True when ``path`` is free, or an xscreen heatmap of ``source`` from an earlier run."""
    if not os.path.lexists(path):
        return True
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.text.get(PNG_MARK) == source
    except (OSError, ValueError):
        return False
