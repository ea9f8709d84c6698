"""Heatmap arithmetic shared by the overlays and the shortcut audit (numpy only).

A class-activation map (CAM) is a coarse grid (7x7 for a 224 px MobileNetV2) in the model's input
frame, i.e. the film squashed to the input size. Each cell summarises the block of pixels under it,
so upsampling treats cell values as samples at block centres (half-pixel alignment, edges
clamped): the same convention as Pillow's bilinear resize.
"""

from __future__ import annotations

import numpy as np


def upsample_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``maps`` (..., h, w) to (..., height, width) bilinearly; float32."""
    height, width = size
    rows = _interpolation_matrix(maps.shape[-2], height)
    cols = _interpolation_matrix(maps.shape[-1], width)
    return np.einsum("Yh,...hw,Xw->...YX", rows, maps.astype(np.float32, copy=False), cols, optimize=True)


def _interpolation_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of linear interpolation between cell centres."""
    centres = (np.arange(target, dtype=np.float64) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = centres - low
    matrix = np.zeros((target, source), dtype=np.float32)
    matrix[np.arange(target), low] += (1 - frac).astype(np.float32)
    matrix[np.arange(target), high] += frac.astype(np.float32)
    return matrix


def positive_evidence(heatmap: np.ndarray) -> np.ndarray:
    """The positive part of a raw CAM scaled to 0..1 by its maximum (all zeros when nothing is positive).

    CAM values are logit contributions: only positive ones speak for the class, and their scale
    differs from film to film, so each map is shown relative to its own strongest evidence.
    """
    positive = np.maximum(heatmap.astype(np.float32, copy=False), 0)
    peak = float(positive.max()) if positive.size else 0.0
    return positive / peak if peak > 0 else np.zeros_like(positive)
