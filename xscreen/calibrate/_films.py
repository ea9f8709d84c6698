"""The site's labelled films, read as ``xscreen train`` reads a folder, and what the network says of each, once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runtime import ScreeningModel
from ..runtime._backends import usable_cores
from ..runtime._decode import DecodeError, decode_radiograph
from ..runtime._labelled import LabelledFolderError, LabelledImage, read_labelled_folders

BATCH = 16


class CalibrationError(ValueError):
    """The site's films cannot calibrate this model; the message (one line) says why and what to do."""


@dataclass
class SiteFilms:
    """The decoded films of a site with their truth, patient and the model's outputs (in label order of the model)."""

    paths: list[Path]
    y: np.ndarray  # true label index in the model's labels
    groups: list[str]  # patient
    probabilities: np.ndarray  # (N, C) the network's, before any stored calibration
    as_is: np.ndarray  # (N, C) what the model file gives today (its own calibration applied, if it has one)
    features: np.ndarray | None  # (N, k) whitened pooled features; None: the model has no scope output
    scope_scores: np.ndarray | None  # (N,) the scope check's score; None: the model has no scope check
    pixels: np.ndarray  # (N, H, W, 1) uint8, to check the written file against
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why) of films that did not decode

    def counts(self, labels) -> dict[str, int]:
        """Films per label, for every label of the model (0 for those the site has none of)."""
        return {label: int((self.y == i).sum()) for i, label in enumerate(labels)}


def read_site_films(folder: str | os.PathLike, model: ScreeningModel) -> SiteFilms:
    """Decode every film of a labelled folder and run the model on it; CalibrationError when the folder is unusable."""
    try:
        images = read_labelled_folders([folder])
    except LabelledFolderError as exc:
        raise CalibrationError(str(exc)) from None
    unknown = sorted({img.label for img in images} - set(model.labels))
    if unknown:
        raise CalibrationError(f"{folder}: labels {', '.join(unknown)} are not the model's "
                               f"({', '.join(model.labels)}); name the sub-folders after its labels")
    return site_films(images, model)


def site_films(images: list[LabelledImage], model: ScreeningModel) -> SiteFilms:
    """Decode ``images`` (a few threads) and run the model on them in batches."""
    size, preprocessing = model.input_size, model.metadata.preprocessing

    def decode(image: LabelledImage):
        try:
            return decode_radiograph(image.path, size, preprocessing)
        except DecodeError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        decoded = list(pool.map(decode, images))
    ok = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    failed = [(str(images[i].path), decoded[i]) for i, d in enumerate(decoded) if isinstance(d, str)]
    if not ok:
        raise CalibrationError("none of the films decodes: " + "; ".join(f"{p}: {why}" for p, why in failed[:3]))
    pixels = np.stack([decoded[i] for i in ok])[..., np.newaxis]
    raw, as_is, features = [], [], []
    for start in range(0, len(pixels), BATCH):
        batch = pixels[start:start + BATCH]
        probabilities, z = model.uncalibrated_outputs(batch)
        raw.append(probabilities)
        features.append(z)
        as_is.append(probabilities if model.calibration is None
                     else model.calibration.apply(probabilities, z, model.labels))
    z = None if features[0] is None else np.concatenate(features)
    scores = model.scope_scores(z) if model.has_scope else None
    return SiteFilms(
        paths=[images[i].path for i in ok],
        y=np.array([model.labels.index(images[i].label) for i in ok]),
        groups=[images[i].group for i in ok],
        probabilities=np.concatenate(raw), as_is=np.concatenate(as_is), features=z, scope_scores=scores,
        pixels=pixels, failed=failed,
    )
