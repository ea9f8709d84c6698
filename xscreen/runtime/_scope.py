"""Is a file something the model can judge? Named reasons instead of a confident wrong label.

Checks, cheapest first:

* **DICOM header** (:func:`dicom_header_reason`), at decode time, before the pixels are decoded:
  a modality that is not a projection radiograph, a body part that is not the chest, a lateral
  view, a secondary capture of something else. Missing tags are never a reason: many exports
  strip them.
* **Colour** (:data:`COLOUR_LIMIT`): a radiograph is grey whatever its file's mode; an image whose
  mean saturation (measured while decoding, before the grey conversion) reaches the limit is a
  photo or a colour figure.
* **The scope head** (:class:`ScopeHead`, models that carry one in ``metadata.scope["head"]``): a
  multinomial logistic regression on the model's whitened scope coordinates ``z`` and the pixel
  spread, fitted on frontal films and on examples of what is not one (lateral views, CT slices,
  photos, blank images, negatives of films, rotated films, crops, text pages). ``1 - p(frontal)``
  above the head's threshold puts a film out of scope, and the most probable other kind names why.
* **The distance** (:func:`scope_scores`), every model with a scope output: the score
  ``min_c mean_j (z_j - m_cj)^2`` is about 1 for films like the training films; above
  ``metadata.scope["threshold"]`` the film is far from them. A backstop for what no example covered.
* **Inverted film** (:func:`inverted_in_scope`), models without a head only: an out-of-scope grey
  film is run once more as its negative; if the negative is in scope, the film is named as
  probably inverted. A head knows negatives as a kind of its own and needs no second pass.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# Mean saturation (0..1) from which an image is a colour image, not a radiograph. Grey films measure 0
# (the cxr3, nih, fullres and OOD films: benchmarks/results/scope_rates.md); thin coloured marks stay far below.
COLOUR_LIMIT = 0.05
COLOUR_REASON = "out of scope: photo or colour image (mean saturation {:.2f}; a radiograph is grey)"
SPREAD_SCALE = 64.0  # pixel std is divided by this before it enters the head

# What the scope head tells apart, in its output order (the first is the only one in scope), and what
# the user reads for each. "other": anything else that is not a frontal chest film.
HEAD_KINDS = ("frontal", "lateral", "ct", "photo", "blank", "inverted", "other")
KIND_REASONS = {  # kind -> (what the user reads, advice or None)
    "lateral": ("lateral view", "the model reads frontal films"),
    "ct": ("CT or cross-section", None),
    "photo": ("photo or colour image", None),
    "blank": ("blank or nearly uniform", None),
    "inverted": ("probably inverted", "a negative; check MONOCHROME1/export settings"),
    "other": ("not a frontal chest film", None),
}
# The reason names a kind only when that kind holds at least this share of the out-of-scope probability;
# otherwise it says only that the image is not a frontal chest film.
KIND_SHARE = 0.5


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


def head_inputs(z: np.ndarray, spread: np.ndarray, features: int) -> np.ndarray:
    """What the scope head reads: the first ``features`` whitened coordinates and the pixel spread."""
    return np.concatenate([z[:, :features], (np.asarray(spread, np.float32) / SPREAD_SCALE)[:, None]],
                          axis=1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class ScopeHead:
    """A fitted scope head (``metadata.scope["head"]``): weights ``(features + 1, K)`` over ``kinds``."""

    kinds: tuple[str, ...]
    features: int
    weights: np.ndarray
    bias: np.ndarray
    threshold: float

    @classmethod
    def from_metadata(cls, head: dict, scope_size: int) -> ScopeHead:
        """Parse and check ``metadata.scope["head"]``; ValueError saying what is wrong."""
        kinds = tuple(head["kinds"])
        features = int(head["features"])
        weights = np.asarray(head["weights"], np.float32)
        bias = np.asarray(head["bias"], np.float32)
        if kinds[:1] != ("frontal",) or any(k not in HEAD_KINDS for k in kinds):
            raise ValueError(f"its scope head's kinds {list(kinds)} are not frontal first, then some of {HEAD_KINDS}")
        if not 0 < features <= scope_size or weights.shape != (features + 1, len(kinds)) or bias.shape != (len(kinds),):
            raise ValueError(f"its scope head has weights {weights.shape} and bias {bias.shape} for {features} "
                             f"features of {scope_size} and {len(kinds)} kinds")
        return cls(kinds, features, weights, bias, float(head["threshold"]))

    def probabilities(self, z: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Kind probabilities ``(N, K)`` float32."""
        logits = head_inputs(z, spread, self.features) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def kind(self, p: np.ndarray) -> str | None:
        """The kind named for a film with kind probabilities ``p`` (None: in scope)."""
        out = 1.0 - float(p[0])
        if out <= self.threshold:
            return None
        kind = 1 + int(np.argmax(p[1:]))
        return self.kinds[kind] if p[kind] >= KIND_SHARE * out else "other"

    def reason(self, p: np.ndarray) -> str | None:
        """Why a film with kind probabilities ``p`` is out of scope, or None when it is in scope."""
        kind = self.kind(p)
        if kind is None:
            return None
        what, advice = KIND_REASONS[kind]
        return (f"out of scope: {what} ({advice + '; ' if advice else ''}"
                f"p(not frontal) {1.0 - float(p[0]):.3f} > {self.threshold:.3g})")


def colour_reason(colour: float) -> str | None:
    """The reason for an image whose mean saturation makes it a colour image, or None."""
    return COLOUR_REASON.format(colour) if colour >= COLOUR_LIMIT else None


def score_reason(score: float, threshold: float) -> str:
    """The reason shown for a film whose scope score is above the threshold (3 digits: never "1.5 > 1.5")."""
    return f"out of scope: far from the training films (score {score:.3g} > {threshold:.3g})"


def describe_scope(scope: dict | None) -> str:
    """One line for ``xscreen info``: the image checks, their thresholds and what they were fitted on."""
    if scope is None:
        return "DICOM headers only (the model has no scope output)"
    rule = scope.get("threshold_rule", "rule not given")
    if "format_ratio" in scope:  # the rule gave the Keras model's threshold; this format's is scaled from it
        rule = (f"rule for the Keras model: {rule}; this file's threshold is the Keras model's "
                f"{float(scope['keras_threshold']):g} x{scope['format_ratio']} for its format's scores")
    line = (f"DICOM headers, colour (mean saturation >= {COLOUR_LIMIT:g}), and the image: out of scope when "
            f"its score > {float(scope['threshold']):g} ({rule}); fitted on {scope.get('fitted_on', 'not given')}")
    head = scope.get("head")
    if head:
        line += (f"; and when its scope head says p(not a frontal chest film) > {float(head['threshold']):g}, "
                 f"telling apart {', '.join(head['kinds'][1:])} ({head.get('threshold_rule', 'rule not given')}; "
                 f"fitted on {head.get('fitted_on', 'not given')})")
    return line


def image_reasons(model, pixels: np.ndarray, outputs, screened: np.ndarray,
                  colour: np.ndarray | None = None) -> list[str | None]:
    """Per film of a batch, why its image is out of scope, or None.

    ``outputs``: the batch's ``model.predict_outputs(pixels)``; ``screened``: a mask of the slots
    holding a decoded film; ``colour``: each film's mean saturation from decoding (None: unknown).
    The checks run in the module docstring's order; the first that finds a reason gives it.
    """
    threshold = model.scope_threshold
    scores = outputs.scope_score
    reasons: list[str | None] = [None] * len(scores)
    head = model.scope_head
    kinds = None if head is None else head.probabilities(outputs.scope, pixel_spread(pixels))
    far = []
    for i in np.flatnonzero(screened):
        reasons[i] = None if colour is None else colour_reason(float(colour[i]))
        if reasons[i] is None and kinds is not None:
            reasons[i] = head.reason(kinds[i])
        if reasons[i] is None and scores[i] > threshold:
            reasons[i] = score_reason(float(scores[i]), threshold)
            far.append(i)
    if far and head is None:
        for i, inverted in zip(far, inverted_in_scope(model, pixels[far])):
            if inverted:
                reasons[i] = INVERTED_REASON
    return reasons


def pixel_spread(pixels: np.ndarray) -> np.ndarray:
    """Standard deviation of each film's pixels ``(N, H, W, 1)`` -> ``(N,)`` float32."""
    return pixels.reshape(len(pixels), -1).std(axis=1).astype(np.float32)


def inverted_in_scope(model, pixels: np.ndarray) -> np.ndarray:
    """For films ``(n, H, W, 1)`` uint8: which of them the model finds in scope as their negative."""
    negative = model.predict_outputs(np.subtract(255, pixels, dtype=np.uint8))
    return negative.scope_score <= model.scope_threshold
