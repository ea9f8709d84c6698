"""Engines that run xscreen's screening pipeline somewhere other than this process.

The local engine is :func:`xscreen.runtime.run_screening`. Each engine here is an optional extra,
imported only when asked for (``xscreen run --engine ray``), and calls the runtime's own functions
(discovery, decoding, the model, the writers) rather than re-implementing them, so a file gets the
same row whichever engine screened it.
"""

from ._parquet import PARQUET_SUFFIX, ParquetRows
from ._ray import (
    CONNECT_TIMEOUT_S,
    RAY_BATCH_SIZE,
    RAY_OUTPUT_SUFFIXES,
    MissingRayError,
    RayEngineError,
    ScreeningActor,
    import_ray,
    run_screening_on_ray,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PARQUET_SUFFIX",
    "ParquetRows",
    "RAY_BATCH_SIZE",
    "RAY_OUTPUT_SUFFIXES",
    "MissingRayError",
    "RayEngineError",
    "ScreeningActor",
    "import_ray",
    "run_screening_on_ray",
]
