"""What a ``.tflite`` file must satisfy before the interpreter sees it, checked in Python.

The TFLite runtime trusts the numbers inside a model file: a damaged file can make it read out of bounds
and take the process down (found by ``benchmarks/fuzz.py``: an int8 zero point of -536,871,040 left by one
flipped bit segfaults ``allocate_tensors`` in ai-edge-litert 2.3). So the graph is walked first: every
tensor, buffer and operator-code index in range, every constant buffer the size of its tensor, no tensor
over 512 MiB, every quantized tensor's zero points inside its integer type and its scales finite and
positive. A file that fails is one clear error, not a crash. Flatbuffer layout as in ``_tflite_metadata.py``.
"""

from __future__ import annotations

import math
import struct

from ._tflite_metadata import TFLiteFormatError

# schema.fbs field numbers
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS = 1, 2, 4
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 0, 1, 2, 3
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_BUFFER, _TENSOR_QUANTIZATION = 0, 1, 2, 4
_QUANT_SCALE, _QUANT_ZERO_POINT = 2, 3
_OPERATOR_OPCODE_INDEX, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS = 0, 1, 2
_BUFFER_DATA = 0
# TensorType -> bytes per element (types of variable or unusual size are not size-checked)
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 4, 14: 4, 16: 2}
_ZERO_POINT_RANGE = {3: (0, 255), 9: (-128, 127), 7: (-32768, 32767)}  # UINT8, INT8, INT16
_TYPE_NAMES = {3: "uint8", 9: "int8", 7: "int16"}
# No tensor of a chest film model comes near this (a 1024x1024x128 float32 feature map); a flipped bit in a
# shape does: [268435457, 3] float32 asked for 3.2 GB and stalled allocate_tensors (benchmarks/fuzz.py).
_MAX_TENSOR_BYTES = 512 * 2**20


class _Reader:
    """Bounds-checked reads of a flatbuffer: any position outside the file is a TFLiteFormatError."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def unpack(self, fmt: str, pos: int):
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.buf):
            raise TFLiteFormatError(f"an offset points outside the file (byte {pos} of {len(self.buf)})")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def field(self, table: int, field: int) -> int | None:
        vtable = table - self.unpack("<i", table)
        slot = 4 + 2 * field
        if slot + 2 > self.unpack("<H", vtable):
            return None
        offset = self.unpack("<H", vtable + slot)
        return table + offset if offset else None

    def scalar(self, table: int, field: int, fmt: str, default: int | float = 0):
        pos = self.field(table, field)
        return default if pos is None else self.unpack(fmt, pos)

    def table(self, table: int, field: int) -> int | None:
        pos = self.field(table, field)
        return None if pos is None else pos + self.unpack("<I", pos)

    def vector(self, table: int, field: int) -> tuple[int, int]:
        """(first element, length); (0, 0) when absent."""
        vec = self.table(table, field)
        if vec is None:
            return 0, 0
        length = self.unpack("<I", vec)
        if vec + 4 + length > len(self.buf):
            raise TFLiteFormatError(f"a vector of {length:,} elements runs past the end of the file")
        return vec + 4, length

    def values(self, table: int, field: int, fmt: str) -> tuple:
        start, length = self.vector(table, field)
        whole = f"<{length}{fmt[1:]}"
        if start + struct.calcsize(whole) > len(self.buf):
            raise TFLiteFormatError(f"a vector of {length:,} elements runs past the end of the file")
        return struct.unpack_from(whole, self.buf, start)

    def tables(self, table: int, field: int) -> list[int]:
        start, length = self.vector(table, field)
        return [start + 4 * i + self.unpack("<I", start + 4 * i) for i in range(length)]


def check_tflite_graph(model: bytes) -> None:
    """Raise TFLiteFormatError naming the first thing in ``model`` the interpreter must not be given."""
    read = _Reader(model)
    root = read.unpack("<I", 0)
    n_opcodes = read.vector(root, _MODEL_OPERATOR_CODES)[1]
    buffer_sizes = [read.vector(buffer, _BUFFER_DATA)[1] for buffer in read.tables(root, _MODEL_BUFFERS)]
    for g, subgraph in enumerate(read.tables(root, _MODEL_SUBGRAPHS)):
        tensors = read.tables(subgraph, _SUBGRAPH_TENSORS)
        for t, tensor in enumerate(tensors):
            _check_tensor(read, tensor, f"subgraph {g} tensor {t}", buffer_sizes)
        for field, what in ((_SUBGRAPH_INPUTS, "input"), (_SUBGRAPH_OUTPUTS, "output")):
            for index in read.values(subgraph, field, "<i"):
                if not 0 <= index < len(tensors):
                    raise TFLiteFormatError(f"subgraph {g} {what} names tensor {index} of {len(tensors)}")
        for o, operator in enumerate(read.tables(subgraph, _SUBGRAPH_OPERATORS)):
            opcode = read.scalar(operator, _OPERATOR_OPCODE_INDEX, "<I")
            if opcode >= n_opcodes:
                raise TFLiteFormatError(f"subgraph {g} operator {o} has operator code {opcode} of {n_opcodes}")
            for field in (_OPERATOR_INPUTS, _OPERATOR_OUTPUTS):
                for index in read.values(operator, field, "<i"):
                    if not -1 <= index < len(tensors):  # -1: an optional input left out
                        raise TFLiteFormatError(f"subgraph {g} operator {o} names tensor {index} of {len(tensors)}")


def _check_tensor(read: _Reader, tensor: int, where: str, buffer_sizes: list[int]) -> None:
    shape = read.values(tensor, _TENSOR_SHAPE, "<i")
    kind = read.scalar(tensor, _TENSOR_TYPE, "<b")
    if any(d < 0 for d in shape) or math.prod(shape) * _ELEMENT_BYTES.get(kind, 1) > _MAX_TENSOR_BYTES:
        raise TFLiteFormatError(f"{where} has an impossible shape {list(shape)}")
    buffer = read.scalar(tensor, _TENSOR_BUFFER, "<I")
    if buffer >= len(buffer_sizes):
        raise TFLiteFormatError(f"{where} names buffer {buffer} of {len(buffer_sizes)}")
    stored = buffer_sizes[buffer]
    if stored and kind in _ELEMENT_BYTES and stored != math.prod(shape) * _ELEMENT_BYTES[kind]:
        raise TFLiteFormatError(f"{where} holds {stored:,} bytes of constants for a shape of {list(shape)}")
    quantization = read.table(tensor, _TENSOR_QUANTIZATION)
    if quantization is None:
        return
    scales = read.values(quantization, _QUANT_SCALE, "<f")
    zero_points = read.values(quantization, _QUANT_ZERO_POINT, "<q")
    if any(not math.isfinite(s) or s < 0 for s in scales):
        raise TFLiteFormatError(f"{where} has a quantization scale that is not a finite positive number")
    if kind in _ZERO_POINT_RANGE:
        low, high = _ZERO_POINT_RANGE[kind]
        wrong = [z for z in zero_points if not low <= z <= high]
        if wrong:
            raise TFLiteFormatError(f"{where} has zero point {wrong[0]:,}, outside {_TYPE_NAMES[kind]}")
