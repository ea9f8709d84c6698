"""What cannot be a radiograph, decided before any model: too small, too thin, or blank.

These are the cheap and certain checks of the scope check (``xscreen run`` without ``--no-scope-check``):
geometry from the file's header, before its pixels are decoded, and the pixel spread of the decoded film.
The limits sit far outside every real frontal film we have (``benchmarks/input_limits.py`` over the
cxr3, nih and fullres folders, 11,626 films: smallest side 224 px, largest aspect ratio 1.99 (long/short),
lowest pixel std 14.1 of 255, 1st percentile 25.9; ``benchmarks/results/input_limits.md``), so no real
film is lost; the model's image score judges everything subtler.
"""

from __future__ import annotations

import numpy as np

# Smallest side a radiograph can have: the real films' smallest is 224 px (cxr3, already downsized);
# 32 still admits the 64-px thumbnails of public chest sets (MedMNIST), with nothing left of a film below.
MIN_SIDE = 32
# Long side / short side: detector plates are 1:1 to 1:1.25 (real films: at most 1.99); 3:1 is a strip.
MAX_ASPECT_RATIO = 3.0
# Pixel standard deviation (0..255) of the film at model size: real films have at least 14.1.
MIN_PIXEL_STD = 5.0


def shape_reason(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` pixels cannot be a radiograph, or None."""
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > MAX_ASPECT_RATIO:
        return (f"out of scope: too thin to be a radiograph ({width}x{height} px, sides 1:{ratio:.3g}; "
                f"a film's are at most 1:{MAX_ASPECT_RATIO:g})")
    if min(width, height) < MIN_SIDE:
        return (f"out of scope: too small to be a radiograph ({width}x{height} px; "
                f"needs at least {MIN_SIDE} px on each side)")
    return None


def pixel_std(grey: np.ndarray) -> float:
    """Standard deviation of a grey uint8 image's pixels, 0..255 (float64, exact for the sizes a model takes)."""
    return float(np.std(grey, dtype=np.float64))


def blank_reason(grey: np.ndarray) -> str | None:
    """Why a decoded grey film has no structure to read (uniform, or nearly), or None."""
    std = pixel_std(grey)
    if std < MIN_PIXEL_STD:
        return (f"out of scope: blank or nearly uniform (pixel std {std:.2g} of 255; "
                f"films have at least {MIN_PIXEL_STD:g})")
    return None
