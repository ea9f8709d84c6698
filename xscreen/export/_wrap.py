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
    heatmap_ready: bool = False  # GAP + one dense head: rebuilt so the export adds the exact cam output

    def describe(self) -> str:
        scaling = INPUT_SCALINGS[self.input_scaling]
        steps = ["grey 0..255 in"]
        if self.tiled_to_rgb:
            steps.append("tiled to RGB")
        steps.append(f"scaled {scaling.name} ({scaling.description})")
        steps.append("softmax added" if self.softmax_added else "output kept")
        steps.append("heatmaps: exact (GAP + one dense layer)" if self.heatmap_ready
                     else "no heatmaps (the head is not GAP + one dense layer)")
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
    x = _scaled_input(image, scaling, channels)
    is_probabilities, evidence = _judge_output(model, scaling, channels)
    head = _gap_dense_head(model, x, is_probabilities)
    outputs = head if head is not None else model(x)
    if not is_probabilities:
        outputs = layers.Softmax(name="softmax_added")(outputs)
    wrapped = keras.Model(image, outputs, name=f"xscreen_wrapped_{model.name}")
    if head is not None and not _same_outputs(wrapped, model, scaling, channels):
        return _plain_wrap(model, scaling, channels, is_probabilities, evidence)
    return wrapped, Wrapping(scaling.name, channels == 3, not is_probabilities, evidence, head is not None)


def _plain_wrap(model, scaling, channels: int, is_probabilities: bool, evidence: str):
    """The wrapper without the heatmap-ready head: the user's model called as one layer."""
    import keras
    from keras import layers

    image = keras.Input((int(model.input_shape[1]), int(model.input_shape[2]), 1), name="image")
    x = _scaled_input(image, scaling, channels)
    outputs = model(x)
    if not is_probabilities:
        outputs = layers.Softmax(name="softmax_added")(outputs)
    return (keras.Model(image, outputs, name=f"xscreen_wrapped_{model.name}"),
            Wrapping(scaling.name, channels == 3, not is_probabilities, evidence, False))


def _scaled_input(image, scaling, channels: int):
    from keras import layers

    x = layers.Concatenate(name="grey_to_rgb")([image] * 3) if channels == 3 else image
    if scaling.name != "raw":
        x = layers.Rescaling(list(scaling.scale[:channels]), offset=list(scaling.offset[:channels]),
                             name=f"{scaling.name}_scaling")(x)
    return x


def _gap_dense_head(model, x, is_probabilities: bool):
    """For a model ending in global average pooling then one dense layer (dropout between allowed), its
    output rebuilt with the layers named as ``_model.with_screening_outputs`` finds them (``out_relu``:
    the last feature map, ``pool``, ``probabilities``: the dense), so the exported file gets the exact
    class-activation map. None for any other head."""
    import keras
    from keras import layers

    tail = [layer for layer in model.layers[1:] if not isinstance(layer, layers.Dropout)]
    if len(tail) < 2 or not isinstance(tail[-1], layers.Dense) or not isinstance(
            tail[-2], layers.GlobalAveragePooling2D) or len(tail[-2].input.shape) != 4:
        return None
    gap, dense = tail[-2], tail[-1]
    try:
        features = keras.Model(model.input, gap.input, name="features")
    except (ValueError, AttributeError):  # the pooling's input is not a tensor of this model's graph
        return None
    feature_map = layers.Identity(name="out_relu")(features(x))
    pooled = layers.Identity(name="pool")(gap(feature_map))
    activation = keras.activations.serialize(dense.activation)
    if not is_probabilities and activation not in ("linear", None):
        return None  # an activation that is neither softmax nor none: keep the model as it is
    head = layers.Dense(dense.units, activation=activation, name="probabilities")
    out = head(pooled)
    head.set_weights(dense.get_weights())
    return out


def _same_outputs(wrapped, model, scaling, channels: int) -> bool:
    """The rebuilt head gives the user's model's outputs on the probe images (else it is not used)."""
    grey = _probe_images(model)
    mine = np.asarray(wrapped.predict(grey, verbose=0), np.float64)
    theirs = np.asarray(model.predict(_scale(grey, scaling, channels), verbose=0), np.float64)
    if mine.shape != theirs.shape:
        return False
    if not np.allclose(mine.sum(1), 1, atol=1e-3) or not np.allclose(theirs.sum(1), 1, atol=1e-3):
        theirs = np.exp(theirs - theirs.max(1, keepdims=True))
        theirs /= theirs.sum(1, keepdims=True)
    return bool(np.allclose(mine, theirs, atol=1e-4))


def _probe_images(model) -> np.ndarray:
    """Flat and noisy grey images 0..255, (PROBE_IMAGES, H, W, 1)."""
    height, width = (int(v) for v in model.input_shape[1:3])
    rng = np.random.default_rng(0)
    flat = np.stack([np.full((height, width, 1), level) for level in (0, 128, 255)])
    return np.concatenate([flat, rng.integers(0, 256, (PROBE_IMAGES - 3, height, width, 1))]).astype(np.float32)


def _scale(grey: np.ndarray, scaling, channels: int) -> np.ndarray:
    pixels = np.repeat(grey, channels, axis=3)
    return (pixels * np.float32(scaling.scale[:channels]) + np.float32(scaling.offset[:channels])).astype(np.float32)


def _judge_output(model, scaling, channels: int) -> tuple[bool, str]:
    """Probabilities or logits: the last layer's softmax says so, else the outputs on probe images."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if type(last).__name__ == "Softmax" or getattr(activation, "__name__", None) == "softmax":
        return True, f"probabilities (last layer {last.name!r} is a softmax)"
    out = np.asarray(model.predict(_scale(_probe_images(model), scaling, channels), verbose=0), dtype=np.float64)
    if out.min() >= 0 and out.max() <= 1 and np.allclose(out.sum(axis=1), 1, atol=1e-3):
        return True, f"probabilities (in [0, 1] and summing to 1 on {PROBE_IMAGES} probe images)"
    return False, (f"logits (last layer {last.name!r} has no softmax and its outputs on {PROBE_IMAGES} probe "
                   "images are not probabilities)")


def probabilities_by_scaling(model, pixels: np.ndarray, known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The user's model wrapped with each input scaling it can take, on grey 0..255 ``pixels``
    (``known``: scalings already run). For ``runtime._assumptions.check_assumptions``."""
    probabilities = dict(known)
    for name in INPUT_SCALINGS:
        if name in probabilities:
            continue
        try:
            wrapped, _ = wrap_foreign_classifier(model, name)
        except ValueError:  # a per-channel scaling for a grey model
            continue
        probabilities[name] = np.asarray(wrapped.predict(pixels.astype(np.float32), batch_size=64, verbose=0))
    return probabilities
