"""The light runtime: decode radiographs, load a model file, screen folders. Never imports TensorFlow.

Everything public is re-exported here; the underscored modules are private.
"""

from ._backends import BACKEND_NAMES, MissingRuntimeError, available_backends
from ._contract import METADATA_KEY, ModelContractError, ModelMetadata
from ._decode import IMAGE_EXTENSIONS, PREPROCESSING_ID, DecodeError, OutOfScopeError, decode_radiograph
from ._discover import discover_inputs
from ._model import ModelOutputs, ScreeningModel, default_model_path, load_model
from ._pipeline import DEFAULT_BATCH_SIZE, ScreeningResult, screen_files
from ._run import NoInputsError, RunSummary, run_screening
from ._writers import OUTPUT_SUFFIXES, ResumeError, open_writer, result_columns

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_BATCH_SIZE",
    "IMAGE_EXTENSIONS",
    "METADATA_KEY",
    "OUTPUT_SUFFIXES",
    "PREPROCESSING_ID",
    "DecodeError",
    "MissingRuntimeError",
    "ModelContractError",
    "ModelMetadata",
    "ModelOutputs",
    "NoInputsError",
    "OutOfScopeError",
    "ResumeError",
    "RunSummary",
    "ScreeningModel",
    "ScreeningResult",
    "available_backends",
    "decode_radiograph",
    "default_model_path",
    "discover_inputs",
    "load_model",
    "open_writer",
    "result_columns",
    "run_screening",
    "screen_files",
]
