"""The requantization scales of a ``.tflite`` file's integer ops, read without creating an interpreter.

An int8 convolution or fully connected op turns its int32 accumulator into the output's int8 with
the scale ``input scale x weight scale / output scale`` (one per output channel for per-channel
weights). XNNPACK, TFLite's default CPU delegate, refuses an op whose scale is 256 or more, and
ai-edge-litert 2.3.0 does not survive the refusal: the process aborts ("double free or corruption")
while the delegate sets itself up. So the scales must be known before any interpreter sees the file:
the export checks the files it writes, and the runtime opens an out-of-range file without XNNPACK.

Parsed from the flatbuffer (schema.fbs): ``Model.operator_codes`` (field 1) and ``Model.subgraphs``
(field 2); ``SubGraph.tensors`` (0) and ``.operators`` (3); ``Operator.opcode_index`` (0),
``.inputs`` (1), ``.outputs`` (2); ``Tensor.name`` (3), ``.quantization`` (4);
``QuantizationParameters.scale`` (2); ``OperatorCode.deprecated_builtin_code`` (0), ``.builtin_code`` (3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._tflite_metadata import TFLiteFormatError, _deref, _field_pos, _string, _u32, _vector

# XNNPACK's limit (its fully-connected and convolution operators return "unsupported parameter" at or above it).
XNNPACK_MAX_REQUANTIZATION_SCALE = 256.0
# Builtin operator codes of the ops that multiply by weights: their inputs are (input, weights, bias).
_WEIGHTED_OPS = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}


@dataclass(frozen=True)
class Requantization:
    """One integer op's largest requantization scale (over its output channels)."""

    op: str  # e.g. "FULLY_CONNECTED"
    output: str  # the name of the op's output tensor, which says where in the graph it is
    scale: float
    position: int  # among the model's weighted ops, in graph order (see weighted_op_outputs)

    def describe(self) -> str:
        return f"{self.op} op {self.output!r} has requantization scale {self.scale:.4g}"


def requantization_scales(model: bytes) -> list[Requantization]:
    """Every quantized CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op of the model, in graph order."""
    found = []
    for position, (op, tensors) in enumerate(_weighted_ops(model)):
        input_scale, weight_scales, output_scale = (scales for _, scales in tensors)
        if input_scale and weight_scales and output_scale and output_scale[0] > 0:
            scale = input_scale[0] * max(weight_scales) / output_scale[0]
            found.append(Requantization(op, tensors[2][0], scale, position))
    return found


def weighted_op_outputs(model: bytes) -> list[str]:
    """The output tensor names of the weighted ops, in graph order, quantized or not.

    Quantizing keeps these ops and their order, so a position in the int8 file names the op in the
    float (calibrated) model it came from: the name a converter's deny-list takes.
    """
    return [tensors[2][0] for _, tensors in _weighted_ops(model)]


def _weighted_ops(model: bytes) -> list[tuple[str, list[tuple[str, list[float]]]]]:
    """(op, [(name, scales) of its input, weights and output]) for every weighted op, in graph order."""
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise TFLiteFormatError("not a TFLite model (no TFL3 identifier)")
    try:
        root = _u32(model, 0)
        codes = _operator_codes(model, root)
        found = []
        subgraphs_start, n_subgraphs = _vector(model, root, 2)
        for s in range(n_subgraphs):
            subgraph = _deref(model, subgraphs_start + 4 * s)
            tensors_start, n_tensors = _vector(model, subgraph, 0)
            operators_start, n_operators = _vector(model, subgraph, 3)
            for o in range(n_operators):
                operator = _deref(model, operators_start + 4 * o)
                code_pos = _field_pos(model, operator, 0)
                code = codes[_u32(model, code_pos)] if code_pos is not None else codes[0]
                if code not in _WEIGHTED_OPS:
                    continue
                inputs, outputs = _ints(model, operator, 1), _ints(model, operator, 2)
                if len(inputs) < 2 or not outputs or not 0 <= min(inputs[0], inputs[1], outputs[0]) or max(
                        inputs[0], inputs[1], outputs[0]) >= n_tensors:
                    raise TFLiteFormatError(f"a {_WEIGHTED_OPS[code]} op refers to tensors that do not exist")
                tensors = [_deref(model, tensors_start + 4 * i) for i in (inputs[0], inputs[1], outputs[0])]
                found.append((_WEIGHTED_OPS[code], [(_string(model, t, 3) or "", _scales(model, t)) for t in tensors]))
        return found
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise TFLiteFormatError(f"damaged TFLite flatbuffer: {exc}") from exc


def outside_xnnpack_range(model: bytes) -> list[Requantization]:
    """The ops XNNPACK would refuse (and ai-edge-litert 2.3.0 abort on), largest scale first."""
    return sorted((r for r in requantization_scales(model) if r.scale >= XNNPACK_MAX_REQUANTIZATION_SCALE),
                  key=lambda r: -r.scale)


def _operator_codes(model: bytes, root: int) -> list[int]:
    start, n = _vector(model, root, 1)
    codes = []
    for i in range(n):
        entry = _deref(model, start + 4 * i)
        deprecated, builtin = _field_pos(model, entry, 0), _field_pos(model, entry, 3)
        # Codes above 127 live only in builtin_code; the larger of the two is the real one.
        codes.append(max(struct.unpack_from("<b", model, deprecated)[0] if deprecated is not None else 0,
                         struct.unpack_from("<i", model, builtin)[0] if builtin is not None else 0))
    return codes


def _ints(model: bytes, table: int, field: int) -> list[int]:
    start, n = _vector(model, table, field)
    return list(struct.unpack_from(f"<{n}i", model, start)) if n else []


def _scales(model: bytes, tensor: int) -> list[float]:
    quantization = _field_pos(model, tensor, 4)
    if quantization is None:
        return []
    start, n = _vector(model, _deref(model, quantization), 2)
    return list(struct.unpack_from(f"<{n}f", model, start)) if n else []
