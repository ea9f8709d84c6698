"""Build a model the way the 2020 notebook did, to try "bring your own model" on real films.

    python benchmarks/notebook_seed_model.py ../shared/data/cxr3 ../shared/weights/mobilenet_v2_..._no_top.h5 OUT \
        [SCALING]

The notebook's interface: a Keras MobileNetV2 on RGB 224x224x3, its scaling done outside the graph
(SCALING ``mobilenet_v2``, the default: ``preprocess_input``, to [-1, 1]; ``unit``:
``ImageDataGenerator(rescale=1./255)``), softmax head over the labels in ``flow_from_directory``'s
alphabetical order. Only the head is trained (on frozen ImageNet
features of a few hundred films) to keep this quick on 2 cores. Writes OUT/seed.keras, and
OUT/train/ and OUT/test/ (class folders of symlinks, split by patient group) for ``xscreen export
--calibration`` and ``--verify``.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ("covid", "healthy", "pneumonia")
TRAIN_PER_CLASS = 300


def split_by_group(data: Path, out: Path) -> dict[str, list[Path]]:
    """One patient group never in both: 80 % of groups to train/, the rest to test/ (symlinks)."""
    splits: dict[str, list[Path]] = {"train": [], "test": []}
    with open(data / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            bucket = int(hashlib.sha256(row["group"].encode()).hexdigest(), 16) % 10
            split = "train" if bucket < 8 else "test"
            link = out / split / row["label"] / Path(row["file"]).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((data / row["file"]).resolve())
            splits[split].append(link)
    return splits


def notebook_model(weights: str):
    import keras
    from keras import layers

    backbone = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=weights)
    backbone.trainable = False
    image = keras.Input((224, 224, 3))
    x = layers.GlobalAveragePooling2D()(backbone(image, training=False))
    return keras.Model(image, layers.Dense(len(LABELS), activation="softmax")(x)), backbone


NOTEBOOK_SCALINGS = {"mobilenet_v2": lambda rgb: rgb / 127.5 - 1.0, "unit": lambda rgb: rgb / 255.0}


def main(data: str, weights: str, out: str, scaling: str = "mobilenet_v2") -> None:
    import keras

    data_path, out_path = Path(data), Path(out)
    train_files = split_by_group(data_path, out_path)["train"]
    rng = np.random.default_rng(0)
    chosen = [f for label in LABELS
              for f in rng.choice([f for f in train_files if f.parent.name == label], TRAIN_PER_CLASS, replace=False)]
    # The notebook's loader: RGB, then its scaling outside the model.
    rgb = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224)), np.float32) for f in chosen])
    y = np.array([LABELS.index(f.parent.name) for f in chosen])
    model, backbone = notebook_model(weights)
    features = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D()]).predict(
        NOTEBOOK_SCALINGS[scaling](rgb), batch_size=32, verbose=0)
    head = model.layers[-1]
    trainer = keras.Sequential([keras.Input((features.shape[1],)), head])
    trainer.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit(features, y, epochs=30, batch_size=32, verbose=0)
    model.save(out_path / "seed.keras")
    print(f"wrote {out_path / 'seed.keras'} (input scaling {scaling}): head trained on {len(chosen)} films, "
          f"train accuracy {trainer.evaluate(features, y, verbose=0)[1]:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
