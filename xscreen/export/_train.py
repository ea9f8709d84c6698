"""``xscreen train``: MobileNetV2 transfer learning that is practical on two CPU cores.

The recipe, and why:

1. Images are decoded once by the runtime's decoder (the same pixels ``xscreen run`` sees) and
   kept in memory; the split is stratified by class and grouped by patient.
2. The frozen lower part of MobileNetV2 (up to ``fine_tune_from``) runs once per image and per
   augmented view; its feature maps are cached. That is ~70% of the network's compute, paid once
   instead of every epoch.
3. Head phase: the classifier head trains on pooled features of the frozen upper blocks (seconds).
4. Fine-tune phase: the upper blocks and head train on the cached feature maps at a lower rate,
   batch-norm statistics frozen, class-weighted, with early stopping on validation macro-F1.
5. The screening threshold is chosen on validation (abnormal sensitivity target) and the test
   split is reported once, at the end.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..runtime._contract import ModelMetadata
from ..runtime._decode import CXR3_PREPROCESSING_ID, DecodeError, decode_radiograph
from ..runtime._labelled import LabelledImage, read_labelled_folder
from ..runtime._metrics import choose_threshold, classification_report, report_markdown

MODEL_FILE = "model.keras"
METADATA_FILE = "model.json"  # the ModelMetadata the export embeds in every format
NEGATIVE_LABEL = "healthy"
SCRATCH_FINE_TUNE_FROM = "block_1"  # with weights=none nearly the whole network trains


@dataclass
class TrainConfig:
    data: Path
    out: Path
    weights: str | None = "imagenet"
    input_size: int = 224
    alpha: float = 1.0
    fine_tune_from: str = "block_8"
    views: int = 4  # cached views per training image: the original and views-1 augmented ones
    head_epochs: int = 30
    epochs: int = 15
    patience: int = 4
    batch_size: int = 32
    head_lr: float = 1e-3
    fine_lr: float = 5e-5
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_sensitivity: float = 0.98  # abnormal sensitivity the validation threshold must reach
    horizontal_flip: bool = False
    seed: int = 0
    limit: int | None = None  # per-class cap, for quick runs
    negative_label: str = NEGATIVE_LABEL
    # The cxr3 pool is 224 px JPEG q75 throughout; the same round trip at run time keeps clean films
    # in the distribution the model learned (see runtime._decode.PREPROCESSINGS).
    preprocessing: str = CXR3_PREPROCESSING_ID


@dataclass
class TrainResult:
    model_path: Path
    metadata: ModelMetadata
    test_report: dict
    timings: dict = field(default_factory=dict)


def split_by_group(
    images: list[LabelledImage], fractions: tuple[float, float, float], seed: int
) -> list[str]:
    """Assign ``train``/``val``/``test`` per patient group, stratified by each group's label.

    A fixed folder split (train/valid/test folders) is kept as it is.
    """
    if all(img.split for img in images):
        return [img.split for img in images]
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.group, []).append(i)
    by_label: dict[str, list[str]] = {}
    for name, members in groups.items():
        labels = [images[i].label for i in members]
        by_label.setdefault(max(set(labels), key=labels.count), []).append(name)
    assignment = [""] * len(images)
    for label in sorted(by_label):
        names = sorted(by_label[label])
        rng.shuffle(names)
        total = sum(len(groups[n]) for n in names)
        targets = {"test": fractions[2] * total, "val": fractions[1] * total}
        filled = {"test": 0, "val": 0}
        for name in names:
            # Fill test, then val, then the rest trains: group sizes vary, so count images.
            split = next((s for s in ("test", "val") if filled[s] < targets[s]), "train")
            if split != "train":
                filled[split] += len(groups[name])
            for i in groups[name]:
                assignment[i] = split
    return assignment


def decode_all(
    images: list[LabelledImage], size: tuple[int, int], preprocessing: str, log: Callable[[str], None]
) -> tuple[np.ndarray, list[int], list[tuple[Path, str]]]:
    """Decode images on a thread pool with the runtime's decoder: (N, H, W, 1) pixels, the indices
    kept, and the unreadable ones (path, reason), which are skipped and logged."""

    def one(img: LabelledImage):
        try:
            return decode_radiograph(img.path, size, preprocessing), None
        except DecodeError as exc:
            return None, str(exc)

    pixels, kept, failed = [], [], []
    with ThreadPoolExecutor(4) as pool:
        for i, (grey, error) in enumerate(pool.map(one, images)):
            if error:
                failed.append((images[i].path, error))
            else:
                pixels.append(grey)
                kept.append(i)
    if failed:
        log(f"skipped {len(failed)} unreadable image(s), e.g. {failed[0][0]}: {failed[0][1]}")
    if not pixels:
        raise ValueError(f"none of the {len(images)} selected images could be decoded")
    return np.stack(pixels)[..., None], kept, failed


def _augmenter(seed: int, horizontal_flip: bool):
    """Radiograph-sane augmentation: small rotation, shift, zoom, contrast. No vertical flip."""
    import keras
    from keras import layers

    steps = [
        layers.RandomRotation(7 / 360, fill_mode="constant", seed=seed),
        layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 2),
        layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 3),
        layers.RandomBrightness(0.08, value_range=(0, 255), seed=seed + 4),
    ]
    if horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 5))
    return keras.Sequential(steps, name="augment")


def _class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return {i: float(len(y) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def _macro_f1(y: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> float:
    return classification_report(y, probabilities, labels)["macro_f1"]


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Run the whole recipe and write the model, split, metadata and test report to ``config.out``."""
    import keras

    from ._model import build_classifier, freeze_batchnorm, set_batchnorm_momentum, split_at_block

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    images = read_labelled_folder(config.data)
    if config.limit:
        rng = np.random.default_rng(config.seed)
        images = [
            images[i]
            for label in sorted({img.label for img in images})
            for i in sorted(
                rng.permutation([j for j, img in enumerate(images) if img.label == label])[: config.limit]
            )
        ]
    labels = sorted({img.label for img in images})
    negative = config.negative_label if config.negative_label in labels else None
    splits = split_by_group(images, config.split, config.seed)
    with open(out / "split.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "group", "split"])
        for img, split in zip(images, splits):
            writer.writerow([img.path.as_posix(), img.label, img.group, split])

    t0 = time.perf_counter()
    size = (config.input_size, config.input_size)
    pixels, kept, failed = decode_all(images, size, config.preprocessing, log)
    timings["decode_s"] = time.perf_counter() - t0
    y_all = np.array([labels.index(images[i].label) for i in kept])
    split_all = np.array([splits[i] for i in kept])
    idx = {s: np.flatnonzero(split_all == s) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if idx[s].size == 0:
            raise ValueError(f"the {s} split is empty: add images or patients")
    log(
        f"{len(kept)} images decoded in {timings['decode_s']:.1f}s; split train/val/test = "
        f"{idx['train'].size}/{idx['val'].size}/{idx['test'].size} (grouped by patient)"
    )

    model = build_classifier(len(labels), config.input_size, config.alpha, config.weights)
    pretrained = config.weights is not None
    if pretrained:
        freeze_batchnorm(model)
        block = config.fine_tune_from
    else:
        # A random backbone with batch norm frozen at its initial statistics passes no signal: train
        # almost everything, let batch norm learn its statistics quickly, and skip the head-only phase.
        set_batchnorm_momentum(model, 0.9)
        block = SCRATCH_FINE_TUNE_FROM
        log(f"weights=none: training from {block}, batch-norm statistics learned, no head-only phase")
    lower, upper, trunk = split_at_block(model, block)
    lower.trainable = False

    # Cache the lower network's features: once for val/test, `views` times for training images.
    t0 = time.perf_counter()
    augment = _augmenter(config.seed, config.horizontal_flip)
    feats = {
        s: lower.predict(pixels[idx[s]].astype("float32"), batch_size=64, verbose=0).astype("float16")
        for s in ("val", "test") if idx[s].size
    }
    n_train = idx["train"].size
    train_views = np.empty((config.views, n_train, *lower.output.shape[1:]), dtype="float16")
    for v in range(config.views):
        for i in range(0, n_train, 256):
            batch = pixels[idx["train"][i:i + 256]].astype("float32")
            if v:
                batch = np.asarray(augment(batch, training=True))
            train_views[v, i:i + 256] = lower.predict(batch, batch_size=64, verbose=0)
    timings["feature_cache_s"] = time.perf_counter() - t0
    log(f"cached features for {config.views} training view(s) in {timings['feature_cache_s']:.0f}s")

    y = {s: y_all[idx[s]] for s in idx}
    weights = _class_weights(y["train"], len(labels))

    # Head phase: pooled features of the frozen upper blocks, computed once.
    t0 = time.perf_counter()
    if pretrained and config.head_epochs:
        head = keras.Sequential([keras.Input((trunk.output.shape[-1],)), model.get_layer("head_dropout"),
                                 model.get_layer("probabilities")], name="head")
        pooled_train = np.concatenate([trunk.predict(v, batch_size=128, verbose=0) for v in train_views])
        pooled_val = trunk.predict(feats["val"], batch_size=128, verbose=0)
        y_train_views = np.tile(y["train"], config.views)
        head.compile(keras.optimizers.Adam(config.head_lr), "sparse_categorical_crossentropy")
        _fit_with_early_stopping(
            head, lambda epoch: (pooled_train, y_train_views), pooled_val, y["val"], labels,
            config.head_epochs, config.patience + 2, weights, config.batch_size * 4, log, "head",
        )
    timings["head_s"] = time.perf_counter() - t0

    # Fine-tune phase: upper blocks and head on cached feature maps, one view per image per epoch.
    t0 = time.perf_counter()
    for layer in upper.layers:
        layer.trainable = True
    if pretrained:
        freeze_batchnorm(upper)
    # Cosine decay: large early steps adapt the blocks, small late ones stop the epoch-to-epoch swings.
    steps = max(1, config.epochs) * int(np.ceil(n_train / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.fine_lr if pretrained else config.head_lr,
                                                      decay_steps=steps, alpha=0.05)
    upper.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(config.seed)

    def fine_epoch_data(epoch: int):
        pick = rng.integers(0, config.views, size=n_train)
        return train_views[pick, np.arange(n_train)], y["train"]

    best = _fit_with_early_stopping(
        upper, fine_epoch_data, feats["val"], y["val"], labels,
        config.epochs, config.patience, weights, config.batch_size, log, "fine-tune",
        evaluate_start=True,
    )
    timings["fine_tune_s"] = time.perf_counter() - t0
    timings["fine_tune_epoch_s"] = best["epoch_s"]

    val_prob = upper.predict(feats["val"], batch_size=128, verbose=0)
    threshold = None
    if negative is not None:
        neg = labels.index(negative)
        threshold = choose_threshold(y["val"] != neg, 1.0 - val_prob[:, neg], config.min_sensitivity)
    val_report = classification_report(y["val"], val_prob, labels, negative, threshold)
    test_report = None
    if "test" in feats:
        test_prob = upper.predict(feats["test"], batch_size=128, verbose=0)
        test_report = classification_report(y["test"], test_prob, labels, negative, threshold)

    model_path = out / MODEL_FILE
    model.save(model_path)
    counts = {label: int((y_all == i).sum()) for i, label in enumerate(labels)}
    metadata = ModelMetadata(
        labels=tuple(labels),
        input_size=(config.input_size, config.input_size),
        preprocessing=config.preprocessing,
        negative_label=negative,
        threshold=threshold,
        extra={"min_sensitivity": config.min_sensitivity},
        model_version=f"mobilenetv2-a{config.alpha}-{config.input_size}-{time.strftime('%Y%m%d')}",
        xscreen_version=__version__,
        data_summary=(
            f"{Path(config.data).name}: {len(kept)} images ("
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"), patient-grouped split {idx['train'].size}/{idx['val'].size}/{idx['test'].size}"
        ),
    )
    (out / METADATA_FILE).write_text(json.dumps(json.loads(metadata.to_json()), indent=2) + "\n")
    timings["total_s"] = time.perf_counter() - started
    _write_reports(out, config, metadata, val_report, test_report, timings, failed, counts)
    return TrainResult(model_path, metadata, test_report or val_report, timings)


def _fit_with_early_stopping(
    model, epoch_data, x_val, y_val, labels, epochs, patience, class_weight, batch_size, log, phase,
    evaluate_start=False,
) -> dict:
    """Train epoch by epoch; keep the weights with the best validation macro-F1."""
    best_f1 = -1.0
    best_weights = model.get_weights()
    if evaluate_start:
        best_f1 = _macro_f1(y_val, model.predict(x_val, batch_size=128, verbose=0), labels)
        log(f"{phase}: starting from validation macro-F1 {best_f1:.4f}")
    stale, epoch_times = 0, []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        x, y = epoch_data(epoch)
        history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True,
                            class_weight=class_weight, verbose=0)
        epoch_times.append(time.perf_counter() - t0)
        f1 = _macro_f1(y_val, model.predict(x_val, batch_size=128, verbose=0), labels)
        improved = f1 > best_f1 + 1e-4
        log(f"{phase} epoch {epoch + 1}/{epochs}: loss {history.history['loss'][-1]:.4f}, "
            f"val macro-F1 {f1:.4f}{' (best)' if improved else ''}, {epoch_times[-1]:.0f}s")
        if improved:
            best_f1, best_weights, stale = f1, model.get_weights(), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.set_weights(best_weights)
    return {"macro_f1": best_f1, "epoch_s": float(np.median(epoch_times)) if epoch_times else 0.0}


def _write_reports(out, config, metadata, val_report, test_report, timings, failed, counts) -> None:
    config_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    report = {
        "config": config_dict,
        "class_counts": counts,
        "skipped_images": [{"path": str(p), "reason": r} for p, r in failed],
        "threshold": metadata.threshold,
        "validation": val_report,
        "test": test_report,
        "timings_s": timings,
        "disclaimer": DISCLAIMER,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Training report: {metadata.model_version}", "", f"> {DISCLAIMER}", "",
          f"Data: {metadata.data_summary}.", ""]
    if test_report:
        md.append(report_markdown(test_report, "Held-out test split"))
    md.append(report_markdown(val_report, "Validation split (threshold chosen here)"))
    md += ["### Time (2-core figures are what matter; see README)", ""]
    md += [f"- {k}: {v:.1f}" for k, v in timings.items()]
    if failed:
        md += ["", f"{len(failed)} image(s) could not be decoded and were skipped; see report.json."]
    (out / "report.md").write_text("\n".join(md) + "\n")


DISCLAIMER = (
    "Not a medical device. Research and benchmarking only: figures come from public datasets whose "
    "classes differ by age group and source (pediatric healthy/pneumonia from one hospital, adult "
    "COVID films from many, some with burned-in text), so they overstate real-world performance."
)
