"""Bring your own model: wrap a Keras classifier trained elsewhere so that it meets the contract.

A model like the 2020 notebook's takes RGB ``(H, W, 3)`` already scaled (``rescale=1/255`` or
MobileNetV2's ``preprocess_input``) and may end in logits. The wrapper puts in front of it what
the contract (``xscreen.runtime._contract``) says is inside every exported graph, and behind it
what the contract says comes out:

    grey (N, H, W, 1) 0..255 -> tiled to RGB (when the model takes 3 channels)
    -> the input scaling (``INPUT_SCALINGS``) -> the model -> softmax (when it ends in logits)

The scaling is the runtime's own table, so a third-party file scored with ``--input-scaling X``
and the same model exported with ``--input-scaling X`` see the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..runtime._contract import INPUT_SCALINGS

PROBE_IMAGES = 6  # flat and noisy images on which an output without a softmax layer is judged


@dataclass(frozen=True)
class Wrapping:
    """What was put around the user's model, for the report and the model's metadata."""

    input_scaling: str  # how the user's model expects its input, now done inside the graph
    tiled_to_rgb: bool
    softmax_added: bool
    output_evidence: str  # how the output was judged to be probabilities or logits

    def describe(self) -> str:
        scaling = INPUT_SCALINGS[self.input_scaling]
        steps = ["grey 0..255 in"]
        if self.tiled_to_rgb:
            steps.append("tiled to RGB")
        steps.append(f"scaled {scaling.name} ({scaling.description})")
        steps.append("softmax added" if self.softmax_added else "output kept")
        return ", ".join(steps) + f"; output: {self.output_evidence}"

    def to_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


def wrap_foreign_classifier(model, input_scaling: str):
    """``(wrapped Keras model, Wrapping)`` for a classifier with an (H, W, 1) or (H, W, 3) input."""
    import keras
    from keras import layers

    height, width, channels = (int(v) for v in model.input_shape[1:4])
    scaling = INPUT_SCALINGS[input_scaling]
    if scaling.per_channel and channels != 3:
        raise ValueError(f"input scaling {scaling.name} is per RGB channel, but the model takes {channels} "
                         "channel(s)")
    image = keras.Input((height, width, 1), name="image")
    x = layers.Concatenate(name="grey_to_rgb")([image] * 3) if channels == 3 else image
    if scaling.name != "raw":
        x = layers.Rescaling(list(scaling.scale[:channels]), offset=list(scaling.offset[:channels]),
                             name=f"{scaling.name}_scaling")(x)
    outputs = model(x)
    is_probabilities, evidence = _judge_output(model, scaling, channels)
    if not is_probabilities:
        outputs = layers.Softmax(name="probabilities")(outputs)
    wrapped = keras.Model(image, outputs, name=f"xscreen_wrapped_{model.name}")
    return wrapped, Wrapping(scaling.name, channels == 3, not is_probabilities, evidence)


def _judge_output(model, scaling, channels: int) -> tuple[bool, str]:
    """Probabilities or logits: the last layer's softmax says so, else the outputs on probe images."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if type(last).__name__ == "Softmax" or getattr(activation, "__name__", None) == "softmax":
        return True, f"probabilities (last layer {last.name!r} is a softmax)"
    height, width = (int(v) for v in model.input_shape[1:3])
    rng = np.random.default_rng(0)
    flat = np.stack([np.full((height, width, 1), level) for level in (0, 128, 255)])
    grey = np.concatenate([flat, rng.integers(0, 256, (PROBE_IMAGES - 3, height, width, 1))]).astype(np.float32)
    pixels = np.repeat(grey, channels, axis=3)
    scaled = pixels * np.float32(scaling.scale[:channels]) + np.float32(scaling.offset[:channels])
    out = np.asarray(model.predict(scaled.astype(np.float32), verbose=0), dtype=np.float64)
    if out.min() >= 0 and out.max() <= 1 and np.allclose(out.sum(axis=1), 1, atol=1e-3):
        return True, f"probabilities (in [0, 1] and summing to 1 on {PROBE_IMAGES} probe images)"
    return False, (f"logits (last layer {last.name!r} has no softmax and its outputs on {PROBE_IMAGES} probe "
                   "images are not probabilities)")
