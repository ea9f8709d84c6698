"""The Keras classifier that honours the model-file contract (see ``xscreen.runtime._contract``)."""

from __future__ import annotations

from pathlib import Path

IMAGENET_WEIGHTS_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5"


def build_classifier(
    n_classes: int,
    input_size: int = 224,
    alpha: float = 1.0,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
):
    """MobileNetV2 on grey ``(H, W, 1)`` 0..255 input, scaled and tiled to RGB inside the graph.

    ``weights``: ``"imagenet"`` (Keras downloads or finds them in ``~/.keras/models``), ``None``,
    or the path of a local ``.h5`` backbone file (for machines without internet).
    """
    import keras
    from keras import layers

    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file {weights} does not exist")
    image = keras.Input((input_size, input_size, 1), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_scale")(image)
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    backbone = keras.applications.MobileNetV2(
        input_tensor=x, include_top=False, alpha=alpha, weights=weights
    )
    x = layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(image, probabilities, name="xscreen_mobilenetv2")


def split_at_block(model, block: str):
    """Split the classifier into (lower, upper, pooled-upper) models that share its layers.

    ``lower`` maps images to the input of ``block`` (e.g. ``"block_13"``), ``upper`` maps those
    features to probabilities and ``trunk`` maps them to the pooled 1280-d vector. Training
    ``upper`` trains the full model, so cached ``lower`` features make fine-tuning cheap.
    """
    import keras

    try:
        cut = model.get_layer(f"{block}_expand").input
    except ValueError as exc:
        raise ValueError(
            f"no MobileNetV2 block named {block!r}; use block_1 … block_16"
        ) from exc
    lower = keras.Model(model.input, cut, name="lower")
    upper = keras.Model(cut, model.output, name="upper")
    trunk = keras.Model(cut, model.get_layer("pool").output, name="trunk")
    return lower, upper, trunk


def freeze_batchnorm(model) -> None:
    """Keep every BatchNormalization in inference mode: ImageNet statistics, no drift in fine-tuning."""
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def set_batchnorm_momentum(model, momentum: float) -> None:
    """Let batch-norm moving statistics follow training faster (Keras' MobileNetV2 uses 0.999)."""
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def with_screening_outputs(classifier, scope_mean=None, scope_projection=None):
    """The classifier with the contract's optional outputs added (``runtime._contract``).

    ``cam``: the last feature map through the final dense kernel as a 1x1 convolution, so the
    class-activation maps are exact (the logits are their spatial means plus the bias).
    ``scope``: the pooled features through the whitening projection of the out-of-scope statistic,
    when one is given. Returns ``(model, outputs)``, ``outputs`` being the per-image shapes that go
    into the metadata. A classifier that is not GAP + dense (a user's own) gets no cam output.
    """
    import keras
    from keras import layers

    outputs = [classifier.output]
    shapes = {"probabilities": [int(classifier.output.shape[-1])]}
    try:
        features, pooled = classifier.get_layer("out_relu").output, classifier.get_layer("pool").output
        dense = classifier.get_layer("probabilities")
    except ValueError:
        return classifier, shapes
    kernel = dense.get_weights()[0]
    cam_layer = layers.Conv2D(kernel.shape[1], 1, use_bias=False, name="cam")
    outputs.append(cam_layer(features))
    cam_layer.set_weights([kernel.reshape(1, 1, *kernel.shape)])
    shapes["cam"] = [int(d) for d in outputs[-1].shape[1:]]
    if scope_projection is not None:
        scope_layer = layers.Dense(scope_projection.shape[1], name="scope")
        outputs.append(scope_layer(pooled))
        scope_layer.set_weights([scope_projection.astype("float32"),
                                 (-scope_mean @ scope_projection).astype("float32")])
        shapes["scope"] = [int(scope_projection.shape[1])]
    return keras.Model(classifier.input, outputs, name=f"{classifier.name}_screening"), shapes
