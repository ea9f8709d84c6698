"""Images that are not frontal chest films, made in code, for teaching the scope head what to refuse.

Real negatives (lateral films, CT slices, photos) come from the user's folder; these are the kinds
anyone can make: blank and near-uniform images, text pages, line drawings, and from real frontal
films their negatives, their rotations by 90/180/270 degrees and crops that are not a whole chest.
Each maker takes a seed and returns a uint8 array (grey ``(H, W)``), so a set is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw


def blank(seed: int) -> np.ndarray:
    """A uniform or nearly uniform image: one level, maybe a soft gradient and a little noise."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(200, 1200)), int(rng.integers(200, 1200))
    level = float(rng.choice([0, 255, rng.uniform(0, 255)]))
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = level + rng.uniform(-40, 40) * (rng.random() < 0.5) * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
    image = image + rng.normal(0, float(rng.choice([0, 1, 3, 8])), (height, width))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def text_page(seed: int) -> np.ndarray:
    """A page of text lines (a scanned report or a form), dark on light or light on dark."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(600, 1400)), int(rng.integers(450, 1000))
    dark_on_light = rng.random() < 0.8
    page = Image.new("L", (width, height), int(rng.integers(200, 256)) if dark_on_light else int(rng.integers(0, 50)))
    draw = ImageDraw.Draw(page)
    ink = int(rng.integers(0, 60)) if dark_on_light else int(rng.integers(200, 256))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz      ABCDEFGHIJ0123456789.,:"))
    y, size = int(rng.integers(10, 60)), int(rng.integers(10, 30))
    while y < height - size:
        line = "".join(rng.choice(letters, int(rng.integers(10, 90))))
        draw.text((int(rng.integers(10, 60)), y), line, fill=ink, font_size=size)
        y += int(size * rng.uniform(1.2, 2.5))
    return np.asarray(page)


def drawing(seed: int) -> np.ndarray:
    """A line drawing or diagram: outlines, lines and filled shapes on a plain background."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(256, 900))
    background = int(rng.choice([0, 255, rng.integers(0, 256)]))
    image = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 25))):
        box = sorted(rng.integers(0, size, 2).tolist()), sorted(rng.integers(0, size, 2).tolist())
        xy = [box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1]
        shade = int(rng.integers(0, 256))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse(xy, outline=shade, width=int(rng.integers(1, 8)),
                         fill=shade if rng.random() < 0.3 else None)
        elif shape == 1:
            draw.rectangle(xy, outline=shade, width=int(rng.integers(1, 8)))
        else:
            draw.line(xy, fill=shade, width=int(rng.integers(1, 10)))
    return np.asarray(image)


def inverted(film: np.ndarray, seed: int) -> np.ndarray:
    """The film's negative, as a MONOCHROME1 film read as MONOCHROME2 looks."""
    return 255 - film


def rotated(film: np.ndarray, seed: int) -> np.ndarray:
    """The film turned by 90, 180 or 270 degrees (a scan stored sideways or upside down)."""
    return np.ascontiguousarray(np.rot90(film, k=1 + seed % 3))


def cropped(film: np.ndarray, seed: int) -> np.ndarray:
    """A window of 10-35 % of the film's area: a part of a chest, not a whole one."""
    rng = np.random.default_rng(seed)
    height, width = film.shape
    share = rng.uniform(0.10, 0.35)
    h = int(height * np.sqrt(share) * rng.uniform(0.8, 1.25))
    w = int(min(width, height * width * share / max(h, 1)))
    h = min(h, height)
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return film[top:top + h, left:left + w]


# name -> (kind, maker): made from a seed alone, or from a real frontal film and a seed.
FROM_SEED: dict[str, tuple[str, Callable[[int], np.ndarray]]] = {
    "blank": ("blank", blank), "text-page": ("other", text_page), "drawing": ("other", drawing),
}
FROM_FILM: dict[str, tuple[str, Callable[[np.ndarray, int], np.ndarray]]] = {
    "inverted": ("inverted", inverted), "rotated": ("other", rotated), "cropped": ("other", cropped),
}
