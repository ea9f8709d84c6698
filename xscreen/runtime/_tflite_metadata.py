"""Read the metadata entries of a ``.tflite`` flatbuffer without TensorFlow or the flatbuffers package.

A TFLite model is a flatbuffer whose root table ``Model`` has ``metadata: [Metadata]`` (field 6),
each ``Metadata {name: string; buffer: uint}`` pointing into ``buffers: [Buffer]`` (field 4),
``Buffer {data: [ubyte]; offset: ulong; size: ulong}`` (offset/size for data stored after the
flatbuffer, as models over 2 GB do). That is all this module parses.
"""

from __future__ import annotations

import struct

_MODEL_BUFFERS = 4
_MODEL_METADATA = 6


class TFLiteFormatError(ValueError):
    """Bytes that are not a TFLite flatbuffer."""


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _field_pos(buf: bytes, table: int, field: int) -> int | None:
    """Absolute position of a table field, or None when the field is absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * field
    if slot + 2 > vtable_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + offset if offset else None


def _deref(buf: bytes, pos: int) -> int:
    return pos + _u32(buf, pos)


def _vector(buf: bytes, table: int, field: int) -> tuple[int, int]:
    """(position of first element, length) of a vector field; (0, 0) when absent."""
    pos = _field_pos(buf, table, field)
    if pos is None:
        return 0, 0
    vec = _deref(buf, pos)
    return vec + 4, _u32(buf, vec)


def read_tflite_metadata(model: bytes) -> dict[str, bytes]:
    """All metadata entries of a TFLite model, name to raw bytes."""
    if len(model) < 8 or model[4:8] != b"TFL3":
        raise TFLiteFormatError("not a TFLite model (no TFL3 identifier)")
    try:
        root = _u32(model, 0)
        buffers_start, n_buffers = _vector(model, root, _MODEL_BUFFERS)
        meta_start, n_meta = _vector(model, root, _MODEL_METADATA)
        entries = {}
        for i in range(n_meta):
            entry = _deref(model, meta_start + 4 * i)
            name_pos = _field_pos(model, entry, 0)
            buffer_pos = _field_pos(model, entry, 1)
            if name_pos is None or buffer_pos is None:
                continue
            name_at = _deref(model, name_pos)
            name = model[name_at + 4:name_at + 4 + _u32(model, name_at)].decode("utf-8")
            index = _u32(model, buffer_pos)
            if index >= n_buffers:
                raise TFLiteFormatError(f"metadata {name!r} points past the buffer table")
            entries[name] = _buffer_bytes(model, _deref(model, buffers_start + 4 * index))
        return entries
    except (struct.error, UnicodeDecodeError) as exc:
        raise TFLiteFormatError(f"damaged TFLite flatbuffer: {exc}") from exc


def _buffer_bytes(model: bytes, buffer: int) -> bytes:
    data_start, size = _vector(model, buffer, 0)
    if size:
        return bytes(model[data_start:data_start + size])
    offset_pos, size_pos = _field_pos(model, buffer, 1), _field_pos(model, buffer, 2)
    if offset_pos is not None and size_pos is not None:
        offset = struct.unpack_from("<Q", model, offset_pos)[0]
        length = struct.unpack_from("<Q", model, size_pos)[0]
        return bytes(model[offset:offset + length])
    return b""
