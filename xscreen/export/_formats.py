"""The table of export formats: one row per format drives the CLI choices, the export loop,
the verification rules, the reports and the docs.

Every converter takes an :class:`ExportInputs` and returns the model file's bytes (metadata is
embedded afterwards, by the export loop, for every format alike).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ExportInputs:
    keras_model: object
    saved_model_dir: Path
    calibration: np.ndarray  # uint8 (N, H, W, 1): real training images, never test images
    input_size: tuple[int, int]
    log: Callable[[str], None] = print  # what a converter did beyond its recipe, in one line


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str  # with "{stem}" for the model's stem
    runtime: str  # "tflite" or "onnx": which interpreter loads it
    quantized: bool  # judged on macro-F1 loss (int8) rather than on near-exact agreement (float)
    input_dtype: str
    description: str
    convert: Callable[[ExportInputs], bytes]


def _tflite_converter(inputs: ExportInputs):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(inputs.saved_model_dir))


def _representative_dataset(inputs: ExportInputs):
    def generate():
        for image in inputs.calibration:
            yield [image[None].astype(np.float32)]

    return generate


def convert_tflite_fp32(inputs: ExportInputs) -> bytes:
    return _tflite_converter(inputs).convert()


def convert_tflite_fp16(inputs: ExportInputs) -> bytes:
    import tensorflow as tf

    converter = _tflite_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert_tflite_dynamic(inputs: ExportInputs) -> bytes:
    import tensorflow as tf

    converter = _tflite_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _int8_converter(inputs: ExportInputs):
    import tensorflow as tf

    converter = _tflite_converter(inputs)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative_dataset(inputs)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter


def convert_tflite_int8(inputs: ExportInputs) -> bytes:
    """Full-integer model: uint8 raw-pixel input (scale 1, zero point 0), float32 probabilities.

    A float32 output costs one dequantize op and keeps probabilities (and so the screening
    threshold) continuous instead of in steps of 1/256. An op whose int8 requantization scale is
    outside XNNPACK's range (see ``runtime._tflite_ops``) is kept in float32 instead: in int8 it
    would make the file abort ai-edge-litert, and its int8 values would be mostly rounding noise.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    from ..runtime._tflite_ops import XNNPACK_MAX_REQUANTIZATION_SCALE, outside_xnnpack_range, weighted_op_outputs

    data = _int8_converter(inputs).convert()
    refused = outside_xnnpack_range(data)
    if not refused:
        return data
    # Calibrate again and quantize with those ops deny-listed, by their names in the float model
    # (the same pass convert() runs, minus the ops XNNPACK cannot take).
    converter = _int8_converter(inputs)
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    names = weighted_op_outputs(calibrated)
    if len(names) != len(weighted_op_outputs(data)):
        raise ValueError("cannot match the int8 model's ops to the float model's to keep "
                         f"{refused[0].describe()} in float32")
    kept = [names[r.position] for r in refused]
    data = mlir_quantize(calibrated, input_data_type=tf.uint8, output_data_type=tf.float32, denylisted_nodes=kept)
    still = outside_xnnpack_range(data)
    if still:
        raise ValueError(f"{still[0].describe()} even with {', '.join(kept)} in float32; "
                         f"XNNPACK takes only scales below {XNNPACK_MAX_REQUANTIZATION_SCALE:g}")
    for r in refused:
        inputs.log(f"kept {r.op} op {r.output!r} in float32: its int8 requantization scale would be "
                   f"{r.scale:.4g}, outside what XNNPACK accepts (below {XNNPACK_MAX_REQUANTIZATION_SCALE:g})")
    return data


ONNX_OPSET = 13


def convert_onnx_fp32(inputs: ExportInputs) -> bytes:
    import tensorflow as tf
    import tf2onnx

    height, width = inputs.input_size
    signature = [tf.TensorSpec([None, height, width, 1], tf.float32, name="image")]
    proto, _ = tf2onnx.convert.from_keras(inputs.keras_model, input_signature=signature, opset=ONNX_OPSET)
    return proto.SerializeToString()


def convert_onnx_int8(inputs: ExportInputs) -> bytes:
    """Static QDQ quantization, per-channel int8 weights, uint8 activations (faster than int8 ones
    on x86, see TOOLCHAIN.md), calibrated on the same images as the TFLite int8 model."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        """Feeds the calibration images one by one, in the strides onnxruntime asks for."""

        def __init__(self, name: str):
            self._name = name
            self.set_range(0, len(inputs.calibration))

        def __len__(self) -> int:
            return len(inputs.calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            images = inputs.calibration[start_index:end_index]
            self._batches = iter([{self._name: image[None].astype(np.float32)} for image in images])

        def get_next(self):
            return next(self._batches, None)

    n = len(inputs.calibration)
    # Min/max per stride of images: the default keeps every activation of every image (GBs).
    stride = next(d for d in range(min(32, n), 0, -1) if n % d == 0)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        fp32.write_bytes(convert_onnx_fp32(inputs))
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        input_name = onnx.load(str(pre)).graph.input[0].name
        quantize_static(
            str(pre), str(out), Calibration(input_name),
            quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            extra_options={"CalibStridedMinMax": stride},
        )
        return out.read_bytes()


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite-fp32", "{stem}_fp32.tflite", "tflite", False, "float32",
                     "float32 reference; XNNPACK-accelerated", convert_tflite_fp32),
        ExportFormat("tflite-fp16", "{stem}_fp16.tflite", "tflite", False, "float32",
                     "float16 weights (half the size), float32 compute on CPU", convert_tflite_fp16),
        ExportFormat("tflite-dynamic", "{stem}_dynamic.tflite", "tflite", True, "float32",
                     "int8 weights, float activations; small, often slower than fp32 on x86",
                     convert_tflite_dynamic),
        ExportFormat("tflite-int8", "{stem}_int8.tflite", "tflite", True, "uint8",
                     "full integer, uint8 pixel input, float32 output; smallest and fastest",
                     convert_tflite_int8),
        ExportFormat("onnx-fp32", "{stem}_fp32.onnx", "onnx", False, "float32",
                     f"tf2onnx, opset {ONNX_OPSET}, NHWC, dynamic batch", convert_onnx_fp32),
        ExportFormat("onnx-int8", "{stem}_int8.onnx", "onnx", True, "float32",
                     "onnxruntime static QDQ, per-channel int8 weights, uint8 activations",
                     convert_onnx_int8),
    )
}


def resolve_formats(names: str | list[str]) -> list[ExportFormat]:
    """``"all"`` or comma-separated names to table rows; an unknown name is a ValueError listing them."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:
        return list(FORMATS.values())
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(
            f"unknown format(s) {', '.join(unknown) or '(none given)'}; choose from: all, {', '.join(FORMATS)}"
        )
    return [FORMATS[n] for n in dict.fromkeys(names)]
