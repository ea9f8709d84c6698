"""The light runtime: decode radiographs, load a model file, screen folders. Never imports TensorFlow.

Everything public is re-exported here; the underscored modules are private.
"""

from ._backends import BACKEND_NAMES, MissingRuntimeError, available_backends
from ._contract import METADATA_KEY, ModelContractError, ModelMetadata
from ._decode import IMAGE_EXTENSIONS, PREPROCESSING_ID, DecodeError, OutOfScopeError, decode_radiograph
from ._discover import discover_inputs
from ._model import (
    BUNDLED_MODEL_NAMES,
    ModelOutputs,
    ScreeningModel,
    default_model_path,
    format_megabytes,
    load_model,
    resolve_model_path,
)
from ._pipeline import DEFAULT_BATCH_SIZE, ScreeningResult, screen_files
from ._run import NoInputsError, OutputExistsError, RunSummary, run_screening
from ._run_record import OutputInUseError, read_record, record_path
from ._writers import OUTPUT_SUFFIXES, ResumeError, open_writer, result_columns

__all__ = [
    "BACKEND_NAMES",
    "BUNDLED_MODEL_NAMES",
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
    "OutputExistsError",
    "OutputInUseError",
    "ResumeError",
    "RunSummary",
    "ScreeningModel",
    "ScreeningResult",
    "available_backends",
    "decode_radiograph",
    "default_model_path",
    "discover_inputs",
    "format_megabytes",
    "load_model",
    "open_writer",
    "read_record",
    "record_path",
    "resolve_model_path",
    "result_columns",
    "run_screening",
    "screen_files",
]
