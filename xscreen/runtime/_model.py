"""Open a model file and turn decoded pixels into class probabilities, for every format alike.

What a model needs (dtype, quantization, layout, batch, which output is which) is read once at
load time; ``predict`` then does the least work per batch: one cast or lookup, one runtime call.
``predict_outputs`` adds what the optional outputs say: the class-activation map and the scope score.
A site calibration stored in the file (``_calibration.py``) is applied to the probabilities right
after the model call, in both; ``uncalibrated_outputs`` is what the network says before it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._backends import TensorSpec, model_format, open_engine, runtime_for, usable_cores
from ._calibration import SiteCalibration
from ._contract import INPUT_SCALING_CHOICES, INPUT_SCALINGS, ModelContractError, ModelMetadata
from ._decode import PREPROCESSINGS
from ._probe import probe_disabled, probe_model
from ._scope import ScopeHead, scope_scores

OUTPUT_ROLES = ("probabilities", "cam", "scope")  # what an output can be (see _contract.py)
# A model without metadata: extra[ASSUMED] marks what the user said, extra["output"] what its output was found to be.
ASSUMED = "assumed"
LOGITS_OUTPUT = "logits, softmax applied by xscreen"
PROBABILITIES_OUTPUT = "probabilities (checked on probe images)"

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BUNDLED_MODEL = _MODELS_DIR / "xscreen_int8.tflite"
BUNDLED_ONNX_MODEL = _MODELS_DIR / "xscreen_int8.onnx"
BUNDLED_SPLIT = _MODELS_DIR / "xscreen_split.csv"  # the bundled model's patient-grouped split (file names only)
# Names that stand for the bundled files wherever a model path is asked for (--model bundled-onnx).
BUNDLED_MODEL_NAMES = ("bundled", "bundled-onnx")


def format_megabytes(n_bytes: int) -> str:
    """A file size the one way xscreen prints sizes: megabytes of 10^6 bytes, one decimal."""
    megabytes = n_bytes / 1e6
    return f"{megabytes:.1f} MB" if megabytes >= 0.1 else f"{megabytes:.2g} MB"  # a tiny test model


def default_model_path() -> Path:
    """The model bundled with the package; FileNotFoundError with what to do when it is absent."""
    return resolve_model_path("bundled")


def resolve_model_path(name: str | os.PathLike) -> Path:
    """A model file path, or one of :data:`BUNDLED_MODEL_NAMES` turned into the bundled file's path.

    FileNotFoundError saying what to do when the file is absent.
    """
    bundled = {"bundled": BUNDLED_MODEL, "bundled-onnx": BUNDLED_ONNX_MODEL}.get(str(name))
    if bundled is None:
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"model file not found: {path} (a .tflite or .onnx file, or one of the bundled models: "
                f"{', '.join(BUNDLED_MODEL_NAMES)})"
            )
        return path
    if not bundled.is_file():
        raise FileNotFoundError(
            f"no bundled model at {bundled} (this install ships without one): "
            "pass --model PATH to a .tflite or .onnx file written by xscreen export"
        )
    return bundled


@dataclass
class ModelOutputs:
    """Everything a model says about a batch of N images."""

    probabilities: np.ndarray  # (N, C) float32, label order
    cam: np.ndarray | None  # (N, h, w, C) float32 class-activation maps; None: the model has none
    scope_score: np.ndarray | None  # (N,) float32, in scope when <= metadata.scope["threshold"]; None: no scope
    scope: np.ndarray | None = None  # (N, k) float32 whitened coordinates the score and the scope head read


class ScreeningModel:
    """A loaded model that honours the contract: uint8 grey pixels in, probabilities per label out.

    Not thread-safe: call ``predict`` from one thread (the pipeline does).
    """

    def __init__(self, path: Path, fmt: str, engine, backend: str, metadata: ModelMetadata,
                 threads: int) -> None:
        self.path = path
        self.format = fmt
        self.backend = backend
        self.metadata = metadata
        self.threads = threads
        self._engine = engine
        # What the runtime had to do differently to open this file (e.g. XNNPACK off), in one line.
        self.notice: str | None = getattr(engine, "notice", None)
        spec = engine.input
        self._channels_last, self._channels = _image_layout(spec, path)
        if spec.shape[0] not in (None, 1):
            raise ModelContractError(f"{path}: its batch is fixed at {spec.shape[0]}; xscreen needs 1 or dynamic")
        self._fixed_batch = spec.shape[0] == 1
        self._input_dtype = spec.dtype
        self._input_lut = _input_lut(spec, metadata.input_scaling, self._channels, path)
        # A per-channel table is indexed by channel too: (1, 1, 1, C) for NHWC, (1, C, 1, 1) for NCHW.
        self._lut_channels = None
        if self._input_lut is not None and self._input_lut.ndim == 2:
            self._lut_channels = np.arange(self._channels).reshape((1, 1, 1, -1) if self._channels_last
                                                                   else (1, -1, 1, 1))
        self._softmax = metadata.extra.get("output") == LOGITS_OUTPUT
        self._roles = match_outputs(engine.outputs, metadata, path)
        scope = metadata.scope if "scope" in self._roles else None
        self._class_means = None if scope is None else _class_means(scope, self.labels, path)
        self.scope_head = None if scope is None or not scope.get("head") else _scope_head(scope, metadata, path)
        self.calibration = None
        if metadata.calibration is not None:
            features = (metadata.outputs or {}).get("scope") if "scope" in self._roles else None
            self.calibration = SiteCalibration.from_dict(metadata.calibration, self.labels,
                                                         None if features is None else int(features[-1]), path)
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the model file: which model wrote a result file (computed once)."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return self._sha256

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the pixels passed to :meth:`predict` must have."""
        return self.metadata.input_size

    @property
    def fixed_batch(self) -> bool:
        """True when the model runs one image per call (its batch dimension is fixed)."""
        return self._fixed_batch

    @property
    def has_heatmaps(self) -> bool:
        """True when the model outputs class-activation maps (``predict_outputs().cam``)."""
        return "cam" in self._roles

    @property
    def has_scope(self) -> bool:
        """True when the model scores how far a film is from its training films (a scope output and statistics)."""
        return self._class_means is not None

    @property
    def has_features(self) -> bool:
        """True when the model outputs its pooled features (the scope output): a site calibration can use them."""
        return "scope" in self._roles

    @property
    def scope_threshold(self) -> float | None:
        """A film whose scope score exceeds this is out of scope; None when the model has no scope check."""
        return float(self.metadata.scope["threshold"]) if self.has_scope else None

    def scope_scores(self, features: np.ndarray) -> np.ndarray:
        """The scope check's score ``(N,)`` of whitened pooled features ``(N, k)``; needs :attr:`has_scope`."""
        return scope_scores(features, self._class_means)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, len(labels))`` float32 for grey pixels ``(N, H, W, 1)`` uint8."""
        return self._probabilities(self._run(pixels), len(pixels))

    def uncalibrated_outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What the network says before any stored site calibration: probabilities ``(N, C)`` and the
        whitened pooled features ``(N, k)`` of the scope output (None: the model has none)."""
        n = len(pixels)
        raw = self._run(pixels)
        return self._output(raw, "probabilities", n), self._output(raw, "scope", n) if self.has_features else None

    def predict_outputs(self, pixels: np.ndarray) -> ModelOutputs:
        """Probabilities, class-activation maps and scope scores for grey pixels ``(N, H, W, 1)`` uint8."""
        n = len(pixels)
        raw = self._run(pixels)
        scope = scope_score = None
        if self._class_means is not None:
            scope = self._output(raw, "scope", n)
            scope_score = self.scope_scores(scope)
        return ModelOutputs(
            probabilities=self._probabilities(raw, n),
            cam=self._output(raw, "cam", n) if self.has_heatmaps else None,
            scope_score=scope_score, scope=scope,
        )

    def _run(self, pixels: np.ndarray) -> list[np.ndarray]:
        height, width = self.metadata.input_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (height, width, 1):
            raise ValueError(
                f"predict expects uint8 pixels of shape (N, {height}, {width}, 1), "
                f"got {pixels.dtype} {pixels.shape}"
            )
        batch = self._model_input(pixels)
        if self._fixed_batch:
            per_image = [self._engine.run(batch[i:i + 1]) for i in range(len(batch))]
            return [np.concatenate(parts) for parts in zip(*per_image)]
        return self._engine.run(batch)

    def _probabilities(self, raw: list[np.ndarray], n: int) -> np.ndarray:
        probabilities = self._output(raw, "probabilities", n)
        if self.calibration is None:
            return probabilities
        features = self._output(raw, "scope", n) if self.calibration.head is not None else None
        return self.calibration.apply(probabilities, features, self.labels)

    def _model_input(self, pixels: np.ndarray) -> np.ndarray:
        if not self._channels_last:
            pixels = pixels.transpose(0, 3, 1, 2)
        if self._lut_channels is not None:  # ImageNet scaling: each RGB channel its own table
            return self._input_lut[self._lut_channels, pixels]
        if self._channels != 1:
            shape = list(pixels.shape)
            shape[3 if self._channels_last else 1] = self._channels
            pixels = np.broadcast_to(pixels, shape)
        if self._input_lut is not None:
            return self._input_lut[pixels]
        # astype always copies into a fresh contiguous array, which is what the runtimes need.
        return pixels.astype(self._input_dtype) if pixels.dtype != self._input_dtype \
            else np.ascontiguousarray(pixels)

    def _output(self, raw: list[np.ndarray], role: str, n: int) -> np.ndarray:
        """One output as float32, dequantized if the runtime left it quantized."""
        index = self._roles[role]
        values, spec = raw[index], self._engine.outputs[index]
        if role == "probabilities":
            values = values.reshape(n, -1)
            if values.shape[1] != len(self.labels):
                raise ModelContractError(
                    f"{self.path}: the model outputs {values.shape[1]} values per image but has "
                    f"{len(self.labels)} labels"
                )
        if spec.quantized:
            values = (values.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)
        if role == "probabilities" and self._softmax:
            return _softmax(values.astype(np.float32, copy=False))
        return values.astype(np.float32, copy=False)

    @property
    def assumptions(self) -> str | None:
        """What the user told xscreen about a model without metadata, in one line (None: it has metadata)."""
        meta = self.metadata
        if ASSUMED not in meta.extra:
            return None
        scaling = INPUT_SCALINGS[meta.input_scaling]
        flag = (f"review when 1 - p({meta.negative_label}) >= {meta.threshold:g}"
                if meta.negative_label is not None and meta.threshold is not None
                else "no screening flag (give --negative-label and --threshold)")
        return (f"{self.path.name} has no xscreen metadata; assumed labels {', '.join(meta.labels)}, "
                f"input scaling {scaling.name} ({scaling.description}), output {meta.extra['output']}, {flag}. "
                "The label order and input scaling are unchecked assumptions (wrong ones give wrong answers "
                "without an error): `xscreen export` of the Keras model checks them on labelled films")

    def info(self) -> dict:
        """Self-description: labels, tensors, quantization, thresholds, metadata, runtime, file size."""
        meta = self.metadata
        return {
            "path": str(self.path),
            "format": self.format,
            "file_size_bytes": self.path.stat().st_size,
            "backend": self.backend,
            "runtime_notice": self.notice,
            "threads": self.threads,
            "labels": list(meta.labels),
            "input_size": list(meta.input_size),
            "batch": "one image per call" if self._fixed_batch else "dynamic",
            "input": self._engine.input.describe(),
            "output": self._engine.outputs[self._roles["probabilities"]].describe(),
            "outputs": {role: self._engine.outputs[index].describe() for role, index in self._roles.items()},
            "negative_label": meta.negative_label,
            "threshold": meta.threshold,
            "heatmaps": self.has_heatmaps,
            "scope": meta.scope if self.has_scope else None,
            "calibration": meta.calibration,
            "preprocessing": meta.preprocessing,
            "input_scaling": meta.input_scaling,
            "assumptions": self.assumptions,
            "metadata": asdict(meta),
        }

    def __repr__(self) -> str:
        return f"ScreeningModel({str(self.path)!r}, {self.backend}, labels={list(self.labels)})"


def renamed_metadata(metadata: ModelMetadata, rename: Mapping[str, str], path: Path) -> ModelMetadata:
    """``metadata`` with labels renamed (old -> new); the negative label, hence the flag, is renamed too."""
    unknown = [old for old in rename if old not in metadata.labels]
    if unknown:
        raise ModelContractError(
            f"{path}: --rename names {', '.join(unknown)}, which the model does not have "
            f"(its labels: {','.join(metadata.labels)})"
        )
    labels = tuple(rename.get(label, label) for label in metadata.labels)
    if len(set(labels)) != len(labels):
        raise ModelContractError(f"{path}: --rename gives two outputs the same name ({','.join(labels)})")
    negative = metadata.negative_label
    negative = None if negative is None else rename.get(negative, negative)
    return metadata.with_updates(labels=labels, negative_label=negative)


def match_outputs(specs: Sequence[TensorSpec], metadata: ModelMetadata, path: Path) -> dict[str, int]:
    """Role (``probabilities``, ``cam``, ``scope``) -> index in ``specs``, by per-image shape.

    Shapes come from ``metadata.outputs``; without it (older or third-party files) the one output is
    the probabilities. Names and order are never used: they differ between formats and converters.
    """
    declared = metadata.outputs
    if declared is None and len(specs) != 1:
        raise ModelContractError(
            f"{path}: the model has {len(specs)} outputs and no metadata saying which is which; "
            "a model without xscreen metadata must have exactly one output, the class probabilities"
        )
    if declared is not None and "probabilities" not in declared:
        raise ModelContractError(f"{path}: its metadata declares no probabilities output ({sorted(declared)})")
    n_probabilities = specs[0].shape[-1] if declared is None else declared["probabilities"][-1]
    if n_probabilities is not None and n_probabilities != len(metadata.labels):
        raise ModelContractError(
            f"{path}: {len(metadata.labels)} labels ({', '.join(metadata.labels)}) but the model "
            f"outputs {n_probabilities} values per image"
        )
    if declared is None:
        return {"probabilities": 0}
    roles: dict[str, int] = {}
    for role in OUTPUT_ROLES:
        if role not in declared:
            continue
        shape = tuple(declared[role])
        fits = [i for i, spec in enumerate(specs) if _fits(spec.shape[1:], shape)]
        if len(fits) != 1:
            found = ", ".join(str(["N" if d is None else d for d in spec.shape]) for spec in specs)
            raise ModelContractError(
                f"{path}: its metadata declares a {role} output of shape (N, {', '.join(map(str, shape))}) "
                f"but {'none' if not fits else 'several'} of its outputs fit ({found})"
            )
        roles[role] = fits[0]
    if len(set(roles.values())) != len(roles):
        raise ModelContractError(f"{path}: two declared outputs have one shape ({declared}); cannot tell them apart")
    return roles


def _fits(per_image: tuple[int | None, ...], declared: tuple) -> bool:
    return len(per_image) == len(declared) and all(d is None or d == e for d, e in zip(per_image, declared))


def _class_means(scope: dict, labels: tuple[str, ...], path: Path) -> np.ndarray:
    """The scope statistics' class means ``(C, k)`` float32, checked against the labels."""
    try:
        means = np.asarray(scope["class_means"], dtype=np.float32)
        float(scope["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"{path}: its scope statistics lack class_means or threshold ({exc})") from exc
    if means.ndim != 2 or len(means) != len(labels):
        raise ModelContractError(
            f"{path}: its scope statistics hold {means.shape} class means for {len(labels)} labels"
        )
    return means


def _scope_head(scope: dict, metadata: ModelMetadata, path: Path) -> ScopeHead:
    """The scope head (``metadata.scope["head"]``), checked against the scope output's size."""
    try:
        return ScopeHead.from_metadata(scope["head"], int(metadata.outputs["scope"][-1]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelContractError(f"{path}: its scope head is malformed: {exc}") from exc


def _image_layout(spec: TensorSpec, path: Path) -> tuple[bool, int]:
    """(channels_last, channels) of an image input: NHWC as the contract says, or a third-party NCHW."""
    shape = spec.shape
    if len(shape) == 4 and shape[3] in (1, 3):
        return True, shape[3]
    if len(shape) == 4 and shape[1] in (1, 3):
        return False, shape[1]
    dims = ["N" if d is None else d for d in shape]
    raise ModelContractError(
        f"{path}: input shape {dims} is not an image batch (N, H, W, 1) with 1 or 3 channels"
    )


def _input_hw(spec: TensorSpec, channels_last: bool) -> tuple[int | None, int | None]:
    return spec.shape[1:3] if channels_last else spec.shape[2:4]


def _input_lut(spec: TensorSpec, input_scaling: str, channels: int, path: Path) -> np.ndarray | None:
    """Pixel value -> model input value: the input scaling, then the input's quantization.

    None where a cast does (raw pixels into a float or identity-quantized input); shape (256,) when
    every channel is alike, (channels, 256) when they differ (ImageNet mean/std).
    """
    scaling = INPUT_SCALINGS[input_scaling]
    identity_quantization = spec.dtype == np.uint8 and spec.scale == 1.0 and spec.zero_point == 0
    if scaling.name == "raw" and (not spec.quantized or identity_quantization):
        return None
    if spec.dtype.kind != "f" and not spec.quantized:
        raise ModelContractError(
            f"{path}: its {spec.dtype.name} input is not quantized, so it takes raw 0..255 pixels only, "
            f"not input scaling {scaling.name}"
        )
    if scaling.per_channel and channels != 3:
        raise ModelContractError(f"{path}: input scaling {scaling.name} is per RGB channel, but the model "
                                 f"takes {channels} channel(s)")
    rows = 3 if scaling.per_channel else 1
    real = (np.arange(256)[None, :] * np.asarray(scaling.scale[:rows])[:, None]
            + np.asarray(scaling.offset[:rows])[:, None])
    if spec.quantized:
        info = np.iinfo(spec.dtype)
        real = np.clip(np.rint(real / spec.scale + spec.zero_point), info.min, info.max)
    table = real.astype(spec.dtype)
    return table if scaling.per_channel else table[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)



def load_model(
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    threads: int | None = None,
    backend: str | None = None,
    input_scaling: str | None = None,
    negative_label: str | None = None,
    threshold: float | None = None,
) -> ScreeningModel:
    """Open a ``.tflite`` or ``.onnx`` model and check it against the model-file contract.

    The metadata comes from the file. ``labels`` names the outputs of a model without metadata
    (its input size is then read from its input shape); for a model with metadata it may only
    repeat the embedded labels in their order, so it can never mislabel an output. ``rename``
    (old name -> new name) renames labels in the output; the negative label and the screening
    flag follow the rename.
    ``input_scaling`` (a key of ``INPUT_SCALINGS``) is required for a model without metadata: what
    its input expects; a logits output then gets a softmax (decided on probe images).
    ``negative_label`` and ``threshold`` set or replace the screening flag.
    ``threads`` is the runtime's thread count (None: one per usable core). ``backend`` forces a
    runtime by name (see ``available_backends``). Raises ``ModelContractError`` naming the file when
    it is not a usable model, ``MissingRuntimeError`` (an ImportError) with the pip command when no
    runtime for its format is installed, ``FileNotFoundError`` when it does not exist.
    """
    if isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of class names, not the string {labels!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    fmt = model_format(path)
    threads = threads or usable_cores()
    sha256 = _probe_first(path, fmt, threads, backend)
    engine, backend_name = open_engine(path, fmt, threads, backend)
    metadata = _resolve_metadata(path, engine, labels, input_scaling)
    if rename:
        metadata = renamed_metadata(metadata, rename, path)
    if negative_label is not None or threshold is not None:
        metadata = _with_flag(path, metadata, negative_label, threshold)
    model = ScreeningModel(path, fmt, engine, backend_name, metadata, threads)
    if ASSUMED in metadata.extra and "output" not in metadata.extra:  # a calibrated copy already says which
        output = PROBABILITIES_OUTPUT if _outputs_probabilities(model) else LOGITS_OUTPUT
        model = ScreeningModel(path, fmt, engine, backend_name,
                               metadata.with_updates(extra={**metadata.extra, "output": output}), threads)
    model._sha256 = sha256
    return model


def _probe_first(path: Path, fmt: str, threads: int, backend: str | None) -> str | None:
    """Open a ``.tflite`` file in a child process first, unless it is bundled or was checked before (``_probe.py``).

    Returns the file's SHA-256 when it was computed (the model keeps it), else None.
    """
    if fmt != "tflite" or probe_disabled() or path.resolve() in (BUNDLED_MODEL, BUNDLED_ONNX_MODEL):
        return None
    runtime = runtime_for(fmt, backend)
    if runtime is None:  # no runtime, or an unknown backend: open_engine says so
        return None
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    probe_model(path, sha256, runtime, threads, backend)
    return sha256


def _with_flag(path: Path, metadata: ModelMetadata, negative_label: str | None,
               threshold: float | None) -> ModelMetadata:
    negative_label = negative_label if negative_label is not None else metadata.negative_label
    if negative_label is None:
        raise ModelContractError(f"{path}: a threshold needs the label that means nothing to review: "
                                 f"--negative-label one of {', '.join(metadata.labels)}")
    if negative_label not in metadata.labels:
        raise ModelContractError(f"{path}: negative label {negative_label!r} is not one of its labels "
                                 f"{', '.join(metadata.labels)}")
    return metadata.with_updates(negative_label=negative_label,
                                 threshold=threshold if threshold is not None else metadata.threshold)


def _outputs_probabilities(model: ScreeningModel) -> bool:
    """Whether the outputs on a few probe images (flat and noisy) lie in [0, 1] and sum to 1."""
    height, width = model.input_size
    rng = np.random.default_rng(0)
    flat = np.stack([np.full((height, width, 1), level, np.uint8) for level in (0, 128, 255)])
    probes = np.concatenate([flat, rng.integers(0, 256, (3, height, width, 1), dtype=np.uint8)])
    out = model.predict(probes)
    # A uint8 output holds probabilities in steps of 1/256: allow for their rounding.
    return bool(out.min() >= -1e-3 and out.max() <= 1 + 1e-3 and np.allclose(out.sum(1), 1, atol=0.02))


def _resolve_metadata(path: Path, engine, labels: Sequence[str] | None,
                      input_scaling: str | None) -> ModelMetadata:
    spec = engine.input
    channels_last, _ = _image_layout(spec, path)
    height, width = _input_hw(spec, channels_last)
    labels = None if labels is None else tuple(labels)
    if input_scaling is not None and input_scaling not in INPUT_SCALINGS:
        raise ModelContractError(f"unknown input scaling {input_scaling!r}: use {INPUT_SCALING_CHOICES}")
    if engine.metadata is not None:
        metadata = ModelMetadata.from_json(engine.metadata)
        if input_scaling not in (None, metadata.input_scaling):
            raise ModelContractError(
                f"{path} carries xscreen metadata saying its input scaling is {metadata.input_scaling} "
                f"(inside the graph for exported models): drop --input-scaling {input_scaling}"
            )
        if labels is not None and labels != metadata.labels:
            raise ModelContractError(
                f"{path} names its outputs itself ({','.join(metadata.labels)}): --labels may only repeat "
                f"them in that order; to rename one, use --rename old=new"
            )
    elif labels is None:
        raise ModelContractError(
            f"{path} carries no xscreen metadata: name its outputs in their order, e.g. --labels "
            "covid,healthy,pneumonia for a model trained with Keras' flow_from_directory or "
            "image_dataset_from_directory, which number the class folders alphabetically"
        )
    elif input_scaling is None:
        raise ModelContractError(f"{path} carries no xscreen metadata: say what its input expects with "
                                 f"{INPUT_SCALING_CHOICES}")
    else:
        if height is None or width is None:
            raise ModelContractError(
                f"{path}: no xscreen metadata and a dynamic input size; xscreen cannot tell what size to feed it"
            )
        metadata = ModelMetadata(
            labels=labels, input_size=(height, width),
            input_dtype="float32" if spec.dtype.kind == "f" else "uint8", input_scaling=input_scaling,
            extra={ASSUMED: "no xscreen metadata in the file: labels, input scaling and screening flag "
                            "given by the user"},
        )

    if metadata.preprocessing not in PREPROCESSINGS:
        raise ModelContractError(
            f"{path} expects preprocessing {metadata.preprocessing!r}, but this xscreen implements "
            f"{', '.join(map(repr, PREPROCESSINGS))}: use the xscreen version that exported it, or re-export it"
        )
    if height is not None and width is not None and (height, width) != metadata.input_size:
        raise ModelContractError(
            f"{path}: metadata says input {metadata.input_size[0]}x{metadata.input_size[1]} but the "
            f"model's input is {height}x{width}"
        )
    return metadata
