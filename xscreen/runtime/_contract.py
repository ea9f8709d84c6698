"""The model-file contract: what an xscreen model takes, returns and carries.

Every model xscreen exports (``xscreen.export``) follows it, and the runtime reads nothing else:

* **Input**: one tensor ``(N, H, W, 1)``: grey pixels 0..255 from
  :func:`xscreen.runtime.decode_radiograph` (preprocessing :data:`PREPROCESSING_ID`), float32, or
  uint8 for full-integer models. The MobileNetV2 scaling to [-1, 1] and the grey-to-RGB tiling are
  inside the graph, so the runtime never normalises: their metadata says ``input_scaling: "raw"``.
* **Input scaling** (:data:`INPUT_SCALINGS`): what a *third-party* model expects its float input to
  be, given by the user (``--input-scaling``, required for a file without metadata): ``raw`` 0..255,
  ``unit`` [0, 1], ``mobilenet_v2`` [-1, 1], ``imagenet`` (x / 255 - mean) / std per RGB channel.
  The runtime applies it after tiling grey to the model's channels; ``xscreen export`` puts it
  inside the graph instead, so every exported file is ``raw``.
* **Outputs**, told apart by their per-image shape as ``metadata.outputs`` declares them (never by
  name or order, which differ between formats):

  - ``probabilities`` ``(N, C)``: softmax over the labels, in label order. Always present. A
    third-party model that outputs logits gets a softmax from the runtime, and says so
    (``extra["output"]``).
  - ``cam`` ``(N, h, w, C)``: the class-activation map, the last feature map times the final dense
    kernel (no bias, no softmax): heatmaps from numpy alone, exact for a GAP + dense head.
  - ``scope`` ``(N, k)``: whitened PCA coordinates of the pooled features, ``z = (f - mean) @ W``.
    The score ``min_c mean_j (z_j - class_means[c][j])^2`` (about 1 for training-like films) above
    ``metadata.scope["threshold"]`` puts a film out of scope. Optionally ``metadata.scope["head"]``, a
    multinomial logistic regression on ``z[:features]`` and the pixel spread (``kinds``, ``features``,
    ``weights`` (features + 1, K), ``bias`` (K,), ``threshold`` on 1 - p(frontal); see
    ``runtime._scope.ScopeHead``), names what a film out of scope is. Files without it keep the score alone.
* **Metadata**: a JSON object (:class:`ModelMetadata`) stored *inside* the model file: in a
  ``.tflite`` as the flatbuffer metadata entry named :data:`METADATA_KEY`, in an ``.onnx`` as the
  ``metadata_props`` entry of that name. A model without it still runs when the caller supplies
  the labels; its input size is then read from the model's input shape.
* **Screening flag**: ``needs review`` when ``1 - p(negative_label) >= threshold``, i.e. the
  probability of anything abnormal reaches the operating point chosen on validation data.
* **Site calibration** (optional, ``metadata.calibration``, written by ``xscreen calibrate``): class
  biases and a temperature on the log-probabilities, and, for a model with a ``scope`` output, a
  linear correction on ``z``; the runtime applies it right after the model call, so ``probabilities``
  everywhere (flag, report, bench) are the calibrated ones (``_calibration.py`` says how). Its
  ``threshold`` is the site's, chosen for the sensitivity the site asked for. A calibrated file says
  ``schema_version`` 2, so an older xscreen refuses it instead of applying the site threshold to
  uncalibrated outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from ._decode import PREPROCESSING_ID

METADATA_KEY = "xscreen"
SCHEMA_VERSION = 2  # the newest this xscreen reads
CALIBRATED_SCHEMA_VERSION = 2  # a file with a site calibration; files without one still say 1


@dataclass(frozen=True)
class InputScaling:
    """Pixel value p (0..255) -> model input ``p * scale[c] + offset[c]`` for RGB channel c."""

    name: str
    description: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]

    @property
    def per_channel(self) -> bool:
        """True when the channels are scaled differently (then the model must take RGB)."""
        return len(set(zip(self.scale, self.offset))) > 1


def _same(scale: float, offset: float = 0.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (scale,) * 3, (offset,) * 3


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on [0, 1] pixels
IMAGENET_STD = (0.229, 0.224, 0.225)

INPUT_SCALINGS: dict[str, InputScaling] = {
    s.name: s
    for s in (
        InputScaling("raw", "0..255 as decoded (the xscreen contract)", *_same(1.0)),
        InputScaling("unit", "[0, 1]: x / 255", *_same(1 / 255)),
        InputScaling("mobilenet_v2", "[-1, 1]: x / 127.5 - 1", *_same(1 / 127.5, -1.0)),
        InputScaling("imagenet", "ImageNet: (x / 255 - mean) / std per RGB channel",
                     tuple(1 / (255 * s) for s in IMAGENET_STD),
                     tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))),
    )
}
INPUT_SCALING_CHOICES = ("--input-scaling raw (0..255), unit ([0, 1]), mobilenet_v2 ([-1, 1]) "
                         "or imagenet (ImageNet mean/std)")


class ModelContractError(ValueError):
    """A model file that does not honour the contract; the message says what is wrong."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file says about itself. ``None`` means unknown (third-party model)."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    input_dtype: str = "float32"  # "float32" or "uint8"
    preprocessing: str = PREPROCESSING_ID
    input_scaling: str = "raw"  # what the model's input expects; exported models scale inside the graph
    negative_label: str | None = None  # the label that means "nothing to review"
    threshold: float | None = None  # review when 1 - p(negative_label) >= threshold
    format: str | None = None
    model_version: str | None = None
    source_sha256: str | None = None
    exported_at: str | None = None
    xscreen_version: str | None = None
    data_summary: str | None = None
    extra: dict = field(default_factory=dict)
    # Per-image shapes of the outputs present: {"probabilities": [C], "cam": [h, w, C], "scope": [k]};
    # None: one output, the probabilities (files written before xscreen 0.2).
    outputs: dict | None = None
    # Out-of-scope statistics for the "scope" output (see the module docstring); None: no image scope check.
    scope: dict | None = None
    schema_version: int = 1
    # The site calibration (see the module docstring and _calibration.py); None: the model as trained.
    calibration: dict | None = None

    def __post_init__(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ModelContractError(f"labels must be non-empty and unique, got {list(self.labels)}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ModelContractError(f"input_size must be (height, width), got {self.input_size}")
        if self.input_dtype not in ("float32", "uint8"):
            raise ModelContractError(f"input_dtype must be float32 or uint8, got {self.input_dtype}")
        if self.input_scaling not in INPUT_SCALINGS:
            raise ModelContractError(
                f"input_scaling must be one of {', '.join(INPUT_SCALINGS)}, got {self.input_scaling!r}"
            )
        if self.negative_label is not None and self.negative_label not in self.labels:
            raise ModelContractError(
                f"negative_label {self.negative_label!r} is not one of the labels {list(self.labels)}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ModelContractError(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.calibration is not None and self.schema_version < CALIBRATED_SCHEMA_VERSION:
            raise ModelContractError(f"a site calibration needs schema_version {CALIBRATED_SCHEMA_VERSION}, "
                                     f"got {self.schema_version}")

    def to_json(self) -> str:
        """Serialise for embedding in a model file."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parse embedded metadata, ignoring keys a newer xscreen may have added."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelContractError(f"model metadata is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict) or "labels" not in raw or "input_size" not in raw:
            raise ModelContractError("model metadata lacks 'labels' or 'input_size'")
        if int(raw.get("schema_version", 1)) > SCHEMA_VERSION:
            raise ModelContractError(
                f"model metadata schema {raw['schema_version']} is newer than this xscreen "
                f"understands ({SCHEMA_VERSION}): pip install -U xscreen"
            )
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        known["labels"] = tuple(known["labels"])
        known["input_size"] = tuple(int(v) for v in known["input_size"])
        return cls(**known)

    def with_updates(self, **changes) -> ModelMetadata:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def needs_review(self, probabilities) -> bool | None:
        """The screening flag for one probability vector, or None when the model defines none."""
        margin = self.review_margin(probabilities)
        return None if margin is None else margin >= 0.0

    def review_margin(self, probabilities) -> float | None:
        """P(not negative) minus the threshold: how far a film is from flipping its flag (None: no threshold).

        A film within a few output steps of zero can flip between runtimes (README, "The same answers on
        every machine"); the flag is ``margin >= 0``.
        """
        if self.negative_label is None or self.threshold is None:
            return None
        return self._abnormal(probabilities) - self.threshold

    def review_reason(self, probabilities) -> str | None:
        """Why the flag is what it is, in one line, e.g. ``P(not healthy) 0.970 >= threshold 0.941``."""
        if self.negative_label is None or self.threshold is None:
            return None
        abnormal = self._abnormal(probabilities)
        sign = ">=" if abnormal >= self.threshold else "<"
        return f"P(not {self.negative_label}) {abnormal:.3f} {sign} threshold {self.threshold:.3f}"

    def _abnormal(self, probabilities) -> float:
        return 1.0 - float(probabilities[self.labels.index(self.negative_label)])
