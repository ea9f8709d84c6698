"""Is a file something the model can judge? Named reasons instead of a confident wrong label.

Three checks, cheapest first:

* **DICOM header** (:func:`dicom_header_reason`), at decode time, before the pixels are decoded:
  a modality that is not a projection radiograph, a body part that is not the chest, a lateral
  view, a secondary capture of something else. Missing tags are never a reason: many exports
  strip them.
* **The image** (:func:`scope_scores`), for every format: the model's ``scope`` output holds
  whitened PCA coordinates ``z`` of its pooled features; the score ``min_c mean_j (z_j - m_cj)^2``
  is about 1 for films like the training films, and a film scoring above the model's
  ``metadata.scope["threshold"]`` is out of scope.
* **Inverted film** (:func:`inverted_in_scope`): an out-of-scope film is run once more as its
  negative; if the negative is in scope, the film is named as probably inverted. Only out-of-scope
  films pay for this second pass.
"""

from __future__ import annotations

import numpy as np

# Projection radiographs: computed (CR), digital (DX), the non-standard DR some vendors write, and
# RG (radiographic imaging). Everything else (CT, MR, US, NM, PT, MG, RTDOSE, SEG, ...) is not a chest film.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
CHEST_BODY_PART_WORDS = ("CHEST", "THORA", "LUNG")  # CHEST, THORAX, THORACIC, LUNG(S), PORTABLE CHEST, ...
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT"})  # not LLD/RLD: decubitus films are frontal projections
SECONDARY_CAPTURE_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# A secondary capture counts as a radiograph when its Modality says so or it is a digitized film (DF);
# workstation captures, scanned documents, drawings and video frames are not.
RADIOGRAPH_CONVERSIONS = frozenset({"DF"})

INVERTED_REASON = "out of scope: probably inverted (a negative; check MONOCHROME1/export settings)"


def dicom_header_reason(ds) -> str | None:
    """Why a DICOM dataset (pydicom) is not a frontal chest radiograph, or None when nothing says so."""
    modality = _tag(ds, "Modality")
    sop_class = _tag(ds, "SOPClassUID")
    if sop_class.startswith(SECONDARY_CAPTURE_SOP_PREFIX):
        conversion = _tag(ds, "ConversionType")
        if modality not in RADIOGRAPH_MODALITIES and conversion not in RADIOGRAPH_CONVERSIONS:
            what = f"modality {modality}" if modality else f"conversion type {conversion or 'not given'}"
            return f"out of scope: a secondary capture, not a radiograph ({what})"
    elif modality and modality not in RADIOGRAPH_MODALITIES:
        return f"out of scope: DICOM modality {modality} is not a chest radiograph (expected CR or DX)"
    body_part = _tag(ds, "BodyPartExamined")
    if body_part and not any(word in body_part for word in CHEST_BODY_PART_WORDS):
        return f"out of scope: body part {body_part} is not the chest"
    view = _tag(ds, "ViewPosition")
    if view in LATERAL_VIEWS:
        return f"out of scope: lateral view ({view}); the model reads frontal films"
    return None


def _tag(ds, keyword: str) -> str:
    """A header value as upper-case text, '' when missing or empty."""
    value = ds.get(keyword, None)
    value = getattr(value, "value", value)
    return "" if value is None else str(value).strip().upper()


def scope_scores(z: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """``min_c mean_j (z_ij - class_means[c, j])^2`` for whitened coordinates ``z`` (N, k): (N,) float32."""
    diff = z[:, None, :] - class_means[None, :, :]
    return np.einsum("nck,nck->nc", diff, diff).min(axis=1) / np.float32(z.shape[1])


def score_reason(score: float, threshold: float) -> str:
    """The reason shown for a film whose scope score is above the threshold (3 digits: never "1.5 > 1.5")."""
    return f"out of scope: far from the training films (score {score:.3g} > {threshold:.3g})"


def describe_scope(scope: dict | None) -> str:
    """One line for ``xscreen info``: the image check's threshold, its rule and what it was fitted on."""
    if scope is None:
        return "DICOM headers only (the model has no scope output)"
    rule = scope.get("threshold_rule", "rule not given")
    if "format_ratio" in scope:  # the rule gave the Keras model's threshold; this format's is scaled from it
        rule = (f"rule for the Keras model: {rule}; this file's threshold is the Keras model's "
                f"{float(scope['keras_threshold']):g} x{scope['format_ratio']} for its format's scores")
    return (f"DICOM headers, and the image: out of scope when its score > {float(scope['threshold']):g} "
            f"({rule}); fitted on {scope.get('fitted_on', 'not given')}")


def image_reasons(model, pixels: np.ndarray, scores: np.ndarray, screened: np.ndarray) -> list[str | None]:
    """Per film of a batch, why its image is out of scope, or None.

    ``scores``: the films' scope scores from ``model.predict_outputs(pixels)``; ``screened``: a mask
    of the slots holding a decoded film. Out-of-scope films are run once more, inverted.
    """
    threshold = model.scope_threshold
    reasons: list[str | None] = [None] * len(scores)
    out = np.flatnonzero(screened & (scores > threshold))
    if out.size:
        for i, inverted in zip(out, inverted_in_scope(model, pixels[out])):
            reasons[i] = INVERTED_REASON if inverted else score_reason(float(scores[i]), threshold)
    return reasons


def inverted_in_scope(model, pixels: np.ndarray) -> np.ndarray:
    """For films ``(n, H, W, 1)`` uint8: which of them the model finds in scope as their negative."""
    negative = model.predict_outputs(np.subtract(255, pixels, dtype=np.uint8))
    return negative.scope_score <= model.scope_threshold
