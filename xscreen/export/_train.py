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
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..runtime._contract import ModelMetadata
from ..runtime._decode import CXR3_PREPROCESSING_ID, DecodeError, decode_radiograph
from ..runtime._labelled import LabelledImage, cohort_of, read_labelled_folders
from ..runtime._metrics import (
    choose_threshold,
    classification_report,
    cohort_markdown,
    cohort_report,
    report_markdown,
)
from ._scope_fit import fit_scope

MODEL_FILE = "model.keras"
METADATA_FILE = "model.json"  # the ModelMetadata the export embeds in every format
SCOPE_FILE = "scope.npz"  # mean and projection of the out-of-scope statistic, built into the exported graph
NEGATIVE_LABEL = "healthy"
SCRATCH_FINE_TUNE_FROM = "block_1"  # with weights=none nearly the whole network trains


@dataclass
class TrainConfig:
    data: tuple[Path, ...]  # one or more labelled folders, each with its own manifest
    out: Path
    weights: str | None = "imagenet"
    input_size: int = 224
    alpha: float = 1.0
    fine_tune_from: str = "block_8"
    views: int = 4  # cached views per training image: the original and views-1 augmented ones
    # Per-sample weights: each class weighs the same; within a class, source s gets a share in
    # proportion to n_s ** (1 - source_balance) (0: by count, 1: every source equal).
    source_balance: float = 0.5
    hold_outs: tuple[str, ...] = ()  # "name=field:pattern[,field:pattern]" (see _holdout.py)
    scope_features: int = 1280  # PCA dimensions of the out-of-scope statistic (1280: all of MobileNetV2's)
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
        # A tie (a patient with as many films of two labels) goes to the first label in sorted order:
        # max() over a bare set would follow string hashing, which changes per process (PYTHONHASHSEED),
        # and one group moving changes that label's whole shuffle. The bundled 0.2 model's split was
        # drawn with all five tied nih patients on ``healthy``, which this rule gives.
        by_label.setdefault(max(sorted(set(labels)), key=labels.count), []).append(name)
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
    """Radiograph-sane augmentation that also breaks acquisition cues: small rotation, shift, zoom
    (zooming in crops borders and burned-in text away), contrast, brightness, blur, noise and a
    random erased patch (a marker or a label is never a reliable cue). No vertical flip."""
    import keras
    from keras import layers

    steps = [
        layers.RandomRotation(7 / 360, fill_mode="constant", seed=seed),
        layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-0.2, 0.1), fill_mode="constant", seed=seed + 2),
        layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 3),
        layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
        layers.RandomGaussianBlur(0.3, kernel_size=5, sigma=(0.1, 1.5), value_range=(0, 255), seed=seed + 5),
        layers.RandomErasing(0.3, scale=(0.01, 0.06), fill_value=0.0, value_range=(0, 255), seed=seed + 6),
    ]
    if horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 7))
    pipeline = keras.Sequential(steps, name="augment")
    rng = np.random.default_rng(seed)

    def augment(batch: np.ndarray) -> np.ndarray:
        """Geometry and texture (Keras), then a random gamma and sensor noise per film."""
        out = np.asarray(pipeline(batch, training=True), dtype=np.float32)
        gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.6), size=(len(out), 1, 1, 1))).astype(np.float32)
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
        out += rng.normal(0, 1, size=out.shape).astype(np.float32) * rng.uniform(0, 6, size=(len(out), 1, 1, 1))
        return np.clip(out, 0, 255)

    return augment


def sample_weights(y: np.ndarray, sources: np.ndarray, n_classes: int, source_balance: float) -> np.ndarray:
    """Per-film weights, mean 1: every class weighs the same, and within a class source s gets a
    share in proportion to n_s ** (1 - source_balance), so a small source (adult pneumonia from one
    hospital) is not drowned by a large one (children from another)."""
    weights = np.zeros(len(y))
    present = [c for c in range(n_classes) if (y == c).any()]
    for c in present:
        in_class = y == c
        names, counts = np.unique(sources[in_class], return_counts=True)
        shares = counts.astype(float) ** (1.0 - source_balance)
        shares /= shares.sum()
        for name, count, share in zip(names, counts, shares):
            weights[in_class & (sources == name)] = share / count / len(present)
    return weights * len(y)


def _macro_f1(y: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> float:
    return classification_report(y, probabilities, labels)["macro_f1"]


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Run the whole recipe and write the model, split, metadata and reports to ``config.out``.

    With hold-outs, the same cached features then train one more model per hold-out without its
    films (nor in validation), scored on all of them: figures for films from a source, a hospital's
    other collection or a population the model never saw.
    """
    import keras

    from ._holdout import parse_hold_outs

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(config.data, (str, Path)):
        config.data = (Path(config.data),)
    hold_outs = parse_hold_outs(config.hold_outs)
    keras.utils.set_random_seed(config.seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    images = read_labelled_folders(config.data)
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
        writer.writerow(["file", "label", "group", "split", "source", "population"])
        for img, split in zip(images, splits):
            writer.writerow([img.path.as_posix(), img.label, img.group, split, img.source, img.population])

    t0 = time.perf_counter()
    size = (config.input_size, config.input_size)
    pixels, kept, failed = decode_all(images, size, config.preprocessing, log)
    images = [images[i] for i in kept]
    timings["decode_s"] = time.perf_counter() - t0
    data = _Data(images, labels, np.array([splits[i] for i in kept]))
    idx = {s: np.flatnonzero(data.split == s) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if idx[s].size == 0:
            raise ValueError(f"the {s} split is empty: add images or patients")
    log(
        f"{len(images)} images decoded in {timings['decode_s']:.1f}s; split train/val/test = "
        f"{idx['train'].size}/{idx['val'].size}/{idx['test'].size} (grouped by patient)"
    )

    trainer = _Trainer(config, labels, log)
    t0 = time.perf_counter()
    trainer.cache_features(pixels, idx["train"])
    del pixels
    timings["feature_cache_s"] = time.perf_counter() - t0
    log(f"cached features for {config.views} training view(s) in {timings['feature_cache_s']:.0f}s")

    t0 = time.perf_counter()
    main = trainer.fit(data, train=idx["train"], val=idx["val"], name="all sources")
    timings["fit_s"] = time.perf_counter() - t0
    timings["fine_tune_epoch_s"] = main.epoch_s
    threshold = main.threshold
    val_report = classification_report(data.y[idx["val"]], main.val_prob, labels, negative, threshold)
    test_report = test_cohorts = None
    if idx["test"].size:
        test_prob = trainer.predict(idx["test"])
        test_report = classification_report(data.y[idx["test"]], test_prob, labels, negative, threshold)
        test_cohorts = {
            "by_source": cohort_report(data.y[idx["test"]], test_prob, labels, data.sources[idx["test"]],
                                       negative, threshold),
            "by_cohort": cohort_report(data.y[idx["test"]], test_prob, labels, data.cohorts[idx["test"]],
                                       negative, threshold),
        }

    t0 = time.perf_counter()
    pooled = trainer.pooled(np.arange(len(images)))
    np.save(out / "pooled_features.npy", pooled.astype(np.float32))  # for re-examining the scope rule
    scope = fit_scope(pooled, data, idx, config.scope_features, log)
    timings["scope_fit_s"] = time.perf_counter() - t0

    model_path = out / MODEL_FILE
    trainer.model.save(model_path)
    np.savez(out / SCOPE_FILE, mean=scope.mean, projection=scope.projection)
    counts = {label: int((data.y == i).sum()) for i, label in enumerate(labels)}
    sources = dict(sorted(Counter(data.sources.tolist()).items()))
    metadata = ModelMetadata(
        labels=tuple(labels),
        input_size=(config.input_size, config.input_size),
        preprocessing=config.preprocessing,
        negative_label=negative,
        threshold=threshold,
        extra={"min_sensitivity": config.min_sensitivity, "trained_on": [Path(d).name for d in config.data]},
        scope=scope.metadata,
        model_version=f"mobilenetv2-a{config.alpha}-{config.input_size}-{time.strftime('%Y%m%d')}",
        xscreen_version=__version__,
        data_summary=(
            f"{' + '.join(Path(d).name for d in config.data)}: {len(images)} images ("
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + "; sources " + ", ".join(f"{k} {v}" for k, v in sources.items())
            + f"), patient-grouped split {idx['train'].size}/{idx['val'].size}/{idx['test'].size}"
        ),
    )
    (out / METADATA_FILE).write_text(json.dumps(json.loads(metadata.to_json()), indent=2) + "\n")
    reports = {"validation": val_report, "test": test_report, "test_cohorts": test_cohorts,
               "scope": scope.metadata, "hold_outs": {}}
    _write_reports(out, config, metadata, reports, timings, failed, counts)
    log(f"model written to {model_path}; test macro-F1 "
        f"{(test_report or val_report)['macro_f1']:.4f}; hold-outs next: {len(hold_outs)}")

    # Hold-outs: retrain without the held-out films, score all of them. The main model is saved above.
    for hold_out in hold_outs:
        t0 = time.perf_counter()
        held = np.array([hold_out.matches(img) for img in images])
        if not held.any():
            raise ValueError(f"hold-out {hold_out.name!r} matches none of the images")
        fitted = trainer.fit(data, train=idx["train"][~held[idx["train"]]], val=idx["val"][~held[idx["val"]]],
                             name=f"without {hold_out.name}")
        held_idx = np.flatnonzero(held)
        prob = trainer.predict(held_idx)
        rest = idx["test"][~held[idx["test"]]]
        reports["hold_outs"][hold_out.name] = {
            "spec": hold_out.spec,
            "trained_on": int(fitted.n_train),
            "threshold": fitted.threshold,
            "held_out": classification_report(data.y[held_idx], prob, labels, negative, fitted.threshold),
            "held_out_by_cohort": cohort_report(data.y[held_idx], prob, labels, data.cohorts[held_idx],
                                                negative, fitted.threshold),
            "rest_of_test": classification_report(data.y[rest], trainer.predict(rest), labels, negative,
                                                  fitted.threshold) if rest.size else None,
            "seconds": time.perf_counter() - t0,
        }
        timings[f"hold_out_{hold_out.name}_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - started
        _write_reports(out, config, metadata, reports, timings, failed, counts)
        log(f"hold-out {hold_out.name}: {len(held_idx)} films scored, macro-F1 (classes present) "
            f"{reports['hold_outs'][hold_out.name]['held_out']['macro_f1']:.4f}")
    timings["total_s"] = time.perf_counter() - started
    _write_reports(out, config, metadata, reports, timings, failed, counts)
    return TrainResult(model_path, metadata, test_report or val_report, timings)


@dataclass
class _Data:
    """The decoded films' labels and where they come from, as arrays for fancy indexing."""

    images: list[LabelledImage]
    labels: list[str]
    split: np.ndarray

    def __post_init__(self) -> None:
        self.y = np.array([self.labels.index(img.label) for img in self.images])
        self.sources = np.array([img.source or "unknown" for img in self.images])
        self.cohorts = np.array([cohort_of(img) for img in self.images])


@dataclass
class _Fit:
    threshold: float | None
    val_prob: np.ndarray
    epoch_s: float
    n_train: int


class _Trainer:
    """One MobileNetV2 whose lower part is frozen and cached once; ``fit`` retrains the rest from
    the same starting weights on any subset, so hold-outs cost a fine-tune, not a feature pass."""

    def __init__(self, config: TrainConfig, labels: list[str], log: Callable[[str], None]) -> None:
        from ._model import build_classifier, freeze_batchnorm, set_batchnorm_momentum, split_at_block

        self.config, self.labels, self.log = config, labels, log
        self.negative = config.negative_label if config.negative_label in labels else None
        self.model = build_classifier(len(labels), config.input_size, config.alpha, config.weights)
        self.pretrained = config.weights is not None
        if self.pretrained:
            freeze_batchnorm(self.model)
            block = config.fine_tune_from
        else:
            # A random backbone with batch norm frozen at its initial statistics passes no signal: train
            # almost everything, let batch norm learn its statistics quickly, and skip the head-only phase.
            set_batchnorm_momentum(self.model, 0.9)
            block = SCRATCH_FINE_TUNE_FROM
            log(f"weights=none: training from {block}, batch-norm statistics learned, no head-only phase")
        self.lower, self.upper, self.trunk = split_at_block(self.model, block)
        self.lower.trainable = False
        for layer in self.upper.layers:
            layer.trainable = True
        if self.pretrained:
            freeze_batchnorm(self.upper)
        self.initial_weights = self.upper.get_weights()

    def cache_features(self, pixels: np.ndarray, train_idx: np.ndarray) -> None:
        """Lower-network features of every film (view 0) and of views-1 augmented views of training films."""
        config = self.config
        self.original = np.concatenate([
            self.lower.predict(pixels[i:i + 256].astype("float32"), batch_size=64, verbose=0).astype("float16")
            for i in range(0, len(pixels), 256)
        ])
        self.train_position = np.full(len(pixels), -1)
        self.train_position[train_idx] = np.arange(train_idx.size)
        augment = _augmenter(config.seed, config.horizontal_flip)
        self.augmented = np.empty((config.views - 1, train_idx.size, *self.original.shape[1:]), dtype="float16")
        for v in range(config.views - 1):
            for i in range(0, train_idx.size, 256):
                batch = augment(pixels[train_idx[i:i + 256]].astype("float32"))
                self.augmented[v, i:i + 256] = self.lower.predict(batch, batch_size=64, verbose=0)
        # Pooled features under the starting weights feed every head phase: computed once.
        self.upper.set_weights(self.initial_weights)
        if self.pretrained and config.head_epochs:
            self.pooled_original = self._trunk(self.original)
            # With --views 1 there are no augmented views: an empty stack, not np.stack([]).
            self.pooled_augmented = np.stack([self._trunk(views) for views in self.augmented]) if len(
                self.augmented) else np.empty((0, *self.pooled_original.shape), self.pooled_original.dtype)

    def _trunk(self, features: np.ndarray) -> np.ndarray:
        return self.trunk.predict(features, batch_size=128, verbose=0)

    def _views(self, train: np.ndarray, pick: np.ndarray, original, augmented) -> np.ndarray:
        """For each training film, view ``pick`` (0 = the film itself)."""
        out = np.array(original[train])
        for v in range(1, self.config.views):
            chosen = pick == v
            out[chosen] = augmented[v - 1, self.train_position[train[chosen]]]
        return out

    def fit(self, data: _Data, train: np.ndarray, val: np.ndarray, name: str) -> _Fit:
        """Head phase, then fine-tune, from the starting weights, on films ``train``; early stopping on ``val``."""
        import keras

        config, labels = self.config, self.labels
        self.log(f"[{name}] training on {train.size} films, validating on {val.size}")
        self.upper.set_weights(self.initial_weights)
        y_train, y_val = data.y[train], data.y[val]
        weights = sample_weights(y_train, data.sources[train], len(labels), config.source_balance)
        views = config.views
        if self.pretrained and config.head_epochs:
            head = keras.Sequential([keras.Input((self.trunk.output.shape[-1],)),
                                     self.model.get_layer("head_dropout"), self.model.get_layer("probabilities")],
                                    name="head")
            pooled_train = np.concatenate([self.pooled_original[train]] + [
                self.pooled_augmented[v, self.train_position[train]] for v in range(views - 1)])
            head.compile(keras.optimizers.Adam(config.head_lr), "sparse_categorical_crossentropy")
            _fit_with_early_stopping(
                head, lambda epoch: (pooled_train, np.tile(y_train, views), np.tile(weights, views)),
                self.pooled_original[val], y_val, labels, config.head_epochs, config.patience + 2,
                config.batch_size * 4, self.log, f"[{name}] head",
            )
        steps = max(1, config.epochs) * int(np.ceil(train.size / config.batch_size))
        # Cosine decay: large early steps adapt the blocks, small late ones stop the epoch-to-epoch swings.
        schedule = keras.optimizers.schedules.CosineDecay(config.fine_lr if self.pretrained else config.head_lr,
                                                          decay_steps=steps, alpha=0.05)
        self.upper.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
        rng = np.random.default_rng(config.seed)

        def fine_epoch_data(epoch: int):
            pick = rng.integers(0, views, size=train.size)
            return self._views(train, pick, self.original, self.augmented), y_train, weights

        best = _fit_with_early_stopping(
            self.upper, fine_epoch_data, self.original[val], y_val, labels,
            config.epochs, config.patience, config.batch_size, self.log, f"[{name}] fine-tune",
            evaluate_start=True,
        )
        val_prob = self.predict(val)
        threshold = None
        if self.negative is not None:
            neg = labels.index(self.negative)
            threshold = choose_threshold(y_val != neg, 1.0 - val_prob[:, neg], config.min_sensitivity)
        return _Fit(threshold, val_prob, best["epoch_s"], int(train.size))

    def predict(self, films: np.ndarray) -> np.ndarray:
        """Probabilities of the model as it stands, for films by index (their original view)."""
        return self.upper.predict(self.original[films], batch_size=128, verbose=0)

    def pooled(self, films: np.ndarray) -> np.ndarray:
        """The trained model's pooled 1280-d features, for films by index."""
        return self._trunk(self.original[films])


def _fit_with_early_stopping(
    model, epoch_data, x_val, y_val, labels, epochs, patience, batch_size, log, phase,
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
        x, y, weights = epoch_data(epoch)
        history = model.fit(x, y, sample_weight=weights, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
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


def _write_reports(out, config, metadata, reports, timings, failed, counts) -> None:
    config_dict = {k: ([str(x) for x in v] if k == "data" else str(v) if isinstance(v, Path) else v)
                   for k, v in asdict(config).items()}
    report = {
        "config": config_dict,
        "class_counts": counts,
        "skipped_images": [{"path": str(p), "reason": r} for p, r in failed],
        "threshold": metadata.threshold,
        **reports,
        "timings_s": timings,
        "disclaimer": DISCLAIMER,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Training report: {metadata.model_version}", "", f"> {DISCLAIMER}", "",
          f"Data: {metadata.data_summary}.", ""]
    if reports["test"]:
        md.append(report_markdown(reports["test"], "Held-out test split (patients never trained on)"))
        md.append(cohort_markdown(reports["test_cohorts"]["by_cohort"], "Test split by cohort"))
    md.append(report_markdown(reports["validation"], "Validation split (threshold chosen here)"))
    for name, hold_out in reports["hold_outs"].items():
        md.append(report_markdown(hold_out["held_out"],
                                  f"Hold-out {name} ({hold_out['spec']}): a model trained without these films"))
        md.append(cohort_markdown(hold_out["held_out_by_cohort"], f"Hold-out {name} by cohort"))
    scope = reports["scope"]
    md += ["### Out-of-scope statistic", "", f"{scope['threshold_rule']}", ""]
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
