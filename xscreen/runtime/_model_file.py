"""Write a model file again with new metadata: the same network, byte for byte, and a new ``xscreen`` entry.

No TensorFlow, no ``onnx`` package, so ``xscreen calibrate`` runs on a Pi. A ``.tflite`` gets its entry
through ``_tflite_metadata.replace_tflite_metadata``. An ``.onnx`` file is a protobuf ``ModelProto``:
its top-level fields are copied as they are, minus an earlier ``metadata_props`` entry (field 14) whose
key is ours, and one new entry is appended (protobuf repeated fields may come in any order).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ._backends import model_format
from ._contract import METADATA_KEY, ModelContractError, ModelMetadata
from ._tflite_metadata import TFLiteFormatError, replace_tflite_metadata

_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1; value = 2}
_LENGTH_DELIMITED = 2


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ModelContractError("damaged protobuf: a varint runs past the end")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _fields(buf: bytes):
    """(field number, wire type, payload or None, start, end) of each top-level field of a protobuf message."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        payload = None
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            size, pos = _varint(buf, pos)
            payload, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            pos += 4
        else:
            raise ModelContractError(f"damaged protobuf: wire type {wire} at byte {start}")
        if pos > len(buf) or field == 0:
            raise ModelContractError(f"damaged protobuf: field at byte {start} runs past the end")
        yield field, wire, payload, start, pos


def replace_onnx_metadata(model: bytes, key: str, value: str) -> bytes:
    """The serialised ONNX model with ``metadata_props[key] = value`` (an earlier entry of that key dropped)."""
    kept = bytearray()
    for field, wire, payload, start, end in _fields(model):
        if field == _METADATA_PROPS and wire == _LENGTH_DELIMITED and _entry_key(payload) == key:
            continue
        kept += model[start:end]
    entry = _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, value.encode("utf-8"))
    return bytes(kept) + _length_delimited(_METADATA_PROPS, entry)


def _entry_key(entry: bytes) -> str | None:
    for field, wire, payload, _, _ in _fields(entry):
        if field == 1 and wire == _LENGTH_DELIMITED:
            return payload.decode("utf-8", errors="replace")
    return None


def _tflite(model: bytes, metadata: ModelMetadata) -> bytes:
    try:
        return replace_tflite_metadata(model, METADATA_KEY, metadata.to_json().encode("utf-8"))
    except TFLiteFormatError as exc:
        raise ModelContractError(f"cannot write its metadata: {exc}") from exc


def _onnx(model: bytes, metadata: ModelMetadata) -> bytes:
    return replace_onnx_metadata(model, METADATA_KEY, metadata.to_json())


METADATA_WRITERS: dict[str, Callable[[bytes, ModelMetadata], bytes]] = {"tflite": _tflite, "onnx": _onnx}


def write_model_with_metadata(source: str | os.PathLike, out: str | os.PathLike, metadata: ModelMetadata) -> Path:
    """Copy the model file ``source`` to ``out`` (same format) with ``metadata`` embedded; written atomically."""
    source, out = Path(source), Path(out)
    fmt = model_format(source)
    if model_format(out) != fmt:
        raise ModelContractError(f"{out}: the output must be a .{fmt} file like {source.name}")
    data = METADATA_WRITERS[fmt](source.read_bytes(), metadata)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out
