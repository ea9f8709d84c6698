"""The heavy build stage: training (Keras) and conversion (TFLite, ONNX).

Importing this package is cheap; TensorFlow, tf2onnx and onnx load only when a function needs
them. Install them with ``pip install 'xscreen[train]'``.
"""

from ._export import ExportConfig, ExportError, export_model
from ._formats import FORMATS, ExportFormat, resolve_formats
from ._model_card import write_model_card
from ._train import TrainConfig, TrainResult, train


def has_training_stack() -> bool:
    """True when TensorFlow/Keras are importable (the ``train`` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


__all__ = [
    "ExportConfig", "ExportError", "ExportFormat", "FORMATS", "TrainConfig", "TrainResult",
    "export_model", "has_training_stack", "resolve_formats", "train", "write_model_card",
]
