"""Inference runtimes: one table of backends, and a thin engine per model format.

An engine hides the runtime's API behind four things: the input spec, the specs of every output
(``outputs``, in the runtime's order, which differs between formats), the ``xscreen`` metadata the
file carries, and ``run(batch) -> [raw output, ...]`` in the order of ``outputs``. Everything the contract
says about pixels, quantization and labels lives in ``_model.py``, once for all formats.
Runtimes are imported only when a model is opened, so ``import xscreen.runtime`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._contract import METADATA_KEY, ModelContractError
from ._tflite_check import check_tflite_graph
from ._tflite_metadata import TFLiteFormatError, read_tflite_metadata
from ._tflite_ops import XNNPACK_MAX_REQUANTIZATION_SCALE, outside_xnnpack_range


class MissingRuntimeError(ImportError):
    """No runtime for a model format is installed; the message holds the pip command."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the runtime reports it."""

    name: str
    shape: tuple[int | None, ...]  # None where the dimension is dynamic
    dtype: np.dtype
    scale: float = 0.0  # quantization (scale 0: not quantized)
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def describe(self) -> dict:
        """JSON-ready description, for ``ScreeningModel.info()``."""
        return {
            "name": self.name,
            "shape": ["N" if d is None else d for d in self.shape],
            "dtype": self.dtype.name,
            "quantization": {"scale": self.scale, "zero_point": self.zero_point} if self.quantized else None,
        }


@dataclass(frozen=True)
class Backend:
    """A runtime that can execute one model format."""

    name: str  # what users pass as backend= and what info() reports
    format: str  # "tflite" or "onnx"
    module: str  # "package.module[:attribute]", imported only when a model is opened
    distributions: tuple[str, ...]  # pip distribution names, for the version string
    install_hint: str
    engine: type  # TFLiteEngine or OnnxEngine: (module, path, model bytes, threads)


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _is_installed(backend: Backend) -> bool:
    # find_spec on the top-level package imports nothing, so probing TensorFlow costs nothing.
    return importlib.util.find_spec(backend.module.partition(":")[0].split(".")[0]) is not None


def _version(backend: Backend) -> str:
    for dist in backend.distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown version"


def available_backends() -> dict[str, list[str]]:
    """Installed runtimes per model format, preferred first, e.g. ``{"tflite": ["ai-edge-litert 2.3.0"]}``.

    Probes without importing anything.
    """
    found: dict[str, list[str]] = {fmt: [] for fmt in MODEL_FORMATS.values()}
    for backend in BACKENDS:
        if _is_installed(backend):
            found[backend.format].append(f"{backend.name} {_version(backend)}")
    return found


KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")  # what `xscreen export` converts


def model_format(path: Path) -> str:
    """``"tflite"`` or ``"onnx"`` from the file name; ModelContractError for anything else."""
    fmt = MODEL_FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix.lower() in KERAS_SUFFIXES:
        raise ModelContractError(
            f"{path} is a Keras model; xscreen runs {' and '.join(MODEL_FORMATS)} files: convert it first "
            f"with `xscreen export {path} --labels ... --input-scaling ...` (needs '.[train]'), then pass "
            "--model with one of the files it writes"
        )
    if fmt is None:
        raise ModelContractError(
            f"{path}: unknown model format {path.suffix or '(no extension)'!r}; "
            f"xscreen runs {' and '.join(MODEL_FORMATS)} files"
        )
    return fmt


def runtime_for(fmt: str, backend: str | None) -> str | None:
    """"name version" of the runtime :func:`open_engine` would pick, found without importing it; None: none fits."""
    for candidate in BACKENDS:
        if candidate.format == fmt and backend in (None, candidate.name) and _is_installed(candidate):
            return f"{candidate.name} {_version(candidate)}"
    return None


def open_engine(path: Path, fmt: str, threads: int, backend: str | None):
    """Open ``path`` with the named backend, or the first installed one for its format.

    Returns ``(engine, "name version")``.
    """
    candidates = [b for b in BACKENDS if b.format == fmt]
    if backend is not None:
        named = [b for b in BACKENDS if b.name == backend]
        if not named:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(b.name for b in BACKENDS)}")
        if named[0].format != fmt:
            raise ModelContractError(f"backend {backend} runs .{named[0].format} files, not {path.name}")
        candidates = named
    model = path.read_bytes()
    for candidate in candidates:
        module_name, _, attribute = candidate.module.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if attribute:
            module = getattr(module, attribute)
        engine = candidate.engine(module, path, model, threads)
        name = f"{candidate.name} {_version(candidate)}"
        return engine, name + (" without XNNPACK" if getattr(engine, "notice", None) else "")
    if backend is not None:
        raise MissingRuntimeError(f"backend {backend} is not installed: {candidates[0].install_hint}")
    raise MissingRuntimeError(_MISSING_RUNTIME[fmt])


@contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Send file descriptor 2 to a temporary file while native code runs; yields a list that holds its text after.

    TFLite's C++ prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to fd 2,
    beyond Python's reach; the caller decides whether the captured text matters (it does when loading failed).
    """
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreter): nothing to silence
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", errors="replace"))


def _single_input(tensors: list, path: Path):
    if len(tensors) != 1:
        raise ModelContractError(
            f"{path}: the model has {len(tensors)} inputs; an xscreen model has exactly one (a grey image batch)"
        )
    return tensors[0]


def _without_default_delegates(module, path: Path, why: str) -> dict:
    """Interpreter arguments that keep XNNPACK away from a file it would abort on."""
    resolver = getattr(module, "OpResolverType", None) or getattr(getattr(module, "experimental", None),
                                                                  "OpResolverType", None)
    if resolver is None:
        raise ModelContractError(f"{path}: {why}, and this TFLite runtime cannot switch XNNPACK off: "
                                 "re-export the model with this xscreen, or pip install -U ai-edge-litert")
    return {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


class TFLiteEngine:
    """A TFLite interpreter (ai-edge-litert, tflite-runtime or tensorflow.lite share one API)."""

    def __init__(self, module, path: Path, model: bytes, threads: int) -> None:
        try:
            entries = read_tflite_metadata(model)
            check_tflite_graph(model)  # a damaged graph can crash the interpreter: refuse it before
            refused = outside_xnnpack_range(model)
        except TFLiteFormatError as exc:
            raise ModelContractError(f"{path} is not a usable TFLite model: {exc}") from exc
        self.metadata = entries.get(METADATA_KEY)
        # Checked before any interpreter exists: XNNPACK refusing an op aborts the whole process.
        self.notice = options = None
        if refused:
            why = (f"its {refused[0].describe()}, outside what XNNPACK accepts "
                   f"(below {XNNPACK_MAX_REQUANTIZATION_SCALE:g})")
            options = _without_default_delegates(module, path, why)
            self.notice = (f"{path.name} runs without XNNPACK (slower): {why}; re-export it with this xscreen "
                           "for a file XNNPACK runs")
        with native_stderr_captured() as native_output:
            try:
                self._interpreter = module.Interpreter(model_content=model, num_threads=threads, **(options or {}))
                self._interpreter.allocate_tensors()
                failure = None
            except (ValueError, RuntimeError) as exc:
                failure = exc
        if failure is not None:
            # The runtime's own stderr lines often say more than the exception (e.g. which op version).
            detail = " ".join(line.strip() for line in "".join(native_output).splitlines()
                              if line.strip() and "XNNPACK delegate" not in line)
            raise ModelContractError(f"{path}: the TFLite runtime cannot load it: {failure}"
                                     + (f" ({detail})" if detail else "")) from failure
        self._model = model  # the interpreter reads from this buffer; keep it alive
        self._path = path
        inp = _single_input(self._interpreter.get_input_details(), path)
        outputs = self._interpreter.get_output_details()
        self._input_index = inp["index"]
        self._output_indices = [out["index"] for out in outputs]
        self._input_shape = tuple(int(d) for d in inp["shape"])
        self.input = self._spec(inp)
        self.outputs = [self._spec(out) for out in outputs]

    @staticmethod
    def _spec(detail: dict) -> TensorSpec:
        signature = detail.get("shape_signature", detail["shape"])
        scale, zero_point = detail["quantization"]
        return TensorSpec(
            name=detail["name"],
            shape=tuple(None if int(d) < 0 else int(d) for d in signature),
            dtype=np.dtype(detail["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw outputs, in the order of ``outputs``, for a batch already in the model's dtype and layout."""
        interpreter = self._interpreter
        try:
            if batch.shape != self._input_shape:
                interpreter.resize_tensor_input(self._input_index, batch.shape)
                interpreter.allocate_tensors()
                self._input_shape = batch.shape
            interpreter.set_tensor(self._input_index, batch)
            interpreter.invoke()
        except (RuntimeError, ValueError) as exc:  # a damaged graph can load and still fail when it runs
            raise ModelContractError(f"{self._path}: the TFLite runtime cannot run it: {' '.join(str(exc).split())}"
                                     ) from exc
        return [interpreter.get_tensor(index) for index in self._output_indices]


class OnnxEngine:
    """An onnxruntime CPU session."""

    _DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
               "tensor(float16)": np.float16, "tensor(double)": np.float64}

    def __init__(self, module, path: Path, model: bytes, threads: int) -> None:
        options = module.SessionOptions()
        options.log_severity_level = 3  # no graph-optimisation chatter on stderr
        options.inter_op_num_threads = 1  # one graph, one op at a time: threads go to intra-op work
        options.intra_op_num_threads = threads
        # Spinning threads starve the decoding threads that run beside inference: measured
        # 170-177 against 75-117 images/s through the pipeline on 2 busy cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            # onnxruntime prints "EP Error ... Falling back" to standard output for a damaged file: not ours to show
            with redirect_stdout(io.StringIO()):
                self._session = module.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for damaged or unsupported files
            raise ModelContractError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        self._path = path
        metadata = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.metadata = None if metadata is None else metadata.encode("utf-8")
        inp = _single_input(self._session.get_inputs(), path)
        self.input = self._spec(inp, path)
        self.outputs = [self._spec(out, path) for out in self._session.get_outputs()]
        self._input_name = inp.name

    @classmethod
    def _spec(cls, arg, path: Path) -> TensorSpec:
        if arg.type not in cls._DTYPES:
            raise ModelContractError(f"{path}: unsupported tensor type {arg.type} for {arg.name}")
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
        return TensorSpec(name=arg.name, shape=shape, dtype=np.dtype(cls._DTYPES[arg.type]))

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw outputs, in the order of ``outputs``, for a batch already in the model's dtype and layout."""
        try:
            return self._session.run(None, {self._input_name: batch})
        except Exception as exc:  # onnxruntime's own types: a damaged graph can load and still fail when it runs
            raise ModelContractError(f"{self._path}: onnxruntime cannot run it: {' '.join(str(exc).split())}"
                                     ) from exc


# Preference order within a format: the first one installed is used unless the caller names one.
BACKENDS = (
    Backend("ai-edge-litert", "tflite", "ai_edge_litert.interpreter", ("ai-edge-litert",),
            "pip install ai-edge-litert", TFLiteEngine),
    Backend("tflite-runtime", "tflite", "tflite_runtime.interpreter", ("tflite-runtime",),
            "pip install tflite-runtime", TFLiteEngine),
    # Last resort: works, but costs ~3 s and ~2 GB to import.
    Backend("tensorflow", "tflite", "tensorflow:lite", ("tensorflow", "tensorflow-cpu"),
            "pip install tensorflow-cpu", TFLiteEngine),
    Backend("onnxruntime", "onnx", "onnxruntime", ("onnxruntime", "onnxruntime-gpu"),
            "pip install 'xscreen[onnx]'", OnnxEngine),
)
BACKEND_NAMES = tuple(b.name for b in BACKENDS)

MODEL_FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
_MISSING_RUNTIME = {
    # 32-bit ARM (armv7l, a Pi on a 32-bit OS) has tflite-runtime wheels and none of the other two.
    "tflite": "no TFLite runtime is installed: pip install ai-edge-litert "
              "(on 32-bit ARM, which has no wheels of it: pip install tflite-runtime 'numpy<2')",
    "onnx": "ONNX models need onnxruntime: pip install 'xscreen[onnx]' "
            "(on 32-bit ARM, which has no wheels of it: use the .tflite model with tflite-runtime)",
}
