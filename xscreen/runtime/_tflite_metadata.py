"""Read and write the metadata entries of a ``.tflite`` flatbuffer without TensorFlow or the flatbuffers package.

A TFLite model is a flatbuffer whose root table ``Model`` has ``metadata: [Metadata]`` (field 6),
each ``Metadata {name: string; buffer: uint}`` pointing into ``buffers: [Buffer]`` (field 4),
``Buffer {data: [ubyte]; offset: ulong; size: ulong}`` (offset/size for data stored after the
flatbuffer, as models over 2 GB do). That is all this module parses.

Writing (:func:`replace_tflite_metadata`, for ``xscreen calibrate`` on a Pi) leans on two flatbuffer
rules: every offset is relative, and points forward. So the old flatbuffer is kept byte for byte
behind a new head that holds a new root table (pointing into the old bytes for everything else),
new ``buffers`` and ``metadata`` vectors (the old entries plus the new one) and the new entry's data.
The head is a multiple of 64 bytes, which keeps every alignment of the old bytes.
"""

from __future__ import annotations

import struct

_MODEL_VERSION = 0  # the one scalar field of Model; its others are offsets
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_MODEL_FIELDS = 8  # version, operator_codes, subgraphs, description, buffers, metadata_buffer, metadata, signature_defs
_BUFFER_OFFSET = 1  # Buffer.offset: data stored after the flatbuffer, at an absolute position
_HEAD_ALIGNMENT = 64


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


def _string(buf: bytes, table: int, field: int) -> str | None:
    """A string field of a table, or None when the field is absent."""
    pos = _field_pos(buf, table, field)
    if pos is None:
        return None
    at = _deref(buf, pos)
    return buf[at + 4:at + 4 + _u32(buf, at)].decode("utf-8")


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
            name = _string(model, entry, 0)
            buffer_pos = _field_pos(model, entry, 1)
            if name is None or buffer_pos is None:
                continue
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


def replace_tflite_metadata(model: bytes, name: str, data: bytes) -> bytes:
    """The model with metadata entry ``name`` holding ``data`` (an earlier entry of that name is dropped).

    TFLiteFormatError for bytes that are not a TFLite model, a schema newer than this writer knows, or
    weights stored after the flatbuffer (absolute positions a new head would shift).
    """
    read_tflite_metadata(model)  # a TFLite flatbuffer whose metadata parses
    root = _u32(model, 0)
    vtable = root - struct.unpack_from("<i", model, root)[0]
    n_fields = (struct.unpack_from("<H", model, vtable)[0] - 4) // 2
    if n_fields > _MODEL_FIELDS:
        raise TFLiteFormatError(f"the model table has {n_fields} fields, a TFLite schema newer than this writer")
    buffers_start, n_buffers = _vector(model, root, _MODEL_BUFFERS)
    buffers = [_deref(model, buffers_start + 4 * i) for i in range(n_buffers)]
    for buffer in buffers:
        pos = _field_pos(model, buffer, _BUFFER_OFFSET)
        if pos is not None and struct.unpack_from("<Q", model, pos)[0] > 1:
            raise TFLiteFormatError("its weights are stored after the flatbuffer (a model over 2 GB)")
    meta_start, n_meta = _vector(model, root, _MODEL_METADATA)
    entries = [_deref(model, meta_start + 4 * i) for i in range(n_meta)]
    kept = [entry for entry in entries if _string(model, entry, 0) != name]

    head = _Head(model[4:8])
    n_slots = max(n_fields, _MODEL_METADATA + 1)
    old_fields = {f: _field_pos(model, root, f) for f in range(n_fields)}
    present = {f for f, pos in old_fields.items() if pos is not None} | {_MODEL_BUFFERS, _MODEL_METADATA}
    root_at = head.table(n_slots, present)
    for field in sorted(present):
        slot = root_at + 4 + 4 * field
        pos = old_fields.get(field)
        if field == _MODEL_BUFFERS:
            head.link(slot, head.vector([*buffers, head.new_buffer_marker]))
        elif field == _MODEL_METADATA:
            head.link(slot, head.vector([*kept, head.new_entry_marker]))
        elif field == _MODEL_VERSION:
            head.put_u32(slot, _u32(model, pos))
        else:
            head.link_old(slot, _deref(model, pos))
    head.new_entry(name, len(buffers), data)
    return head.finish(root_at) + model


class _Head:
    """The bytes put in front of an old flatbuffer: positions are absolute in the new file; links to old
    objects are resolved once the head's length (the old bytes' shift) is known."""

    new_buffer_marker = -1
    new_entry_marker = -2

    def __init__(self, identifier: bytes) -> None:
        self.bytes = bytearray(8)
        self.bytes[4:8] = identifier
        self.old_links: list[tuple[int, int]] = []  # (slot in head, position in the old bytes)
        self.pending: dict[int, list[int]] = {}  # marker -> slots to point at the object made later

    def _align(self, n: int, extra: int = 0) -> None:
        self.bytes += b"\0" * (-(len(self.bytes) + extra) % n)

    def put_u32(self, at: int, value: int) -> None:
        struct.pack_into("<I", self.bytes, at, value)

    def link(self, slot: int, target: int) -> None:
        self.put_u32(slot, target - slot)

    def link_old(self, slot: int, old_position: int) -> None:
        self.old_links.append((slot, old_position))

    def table(self, n_slots: int, present: set[int] | None = None) -> int:
        """A table of n_slots 4-byte fields, field f at 4 + 4 * f (absent unless in ``present``; None: all),
        its vtable just before it."""
        present = set(range(n_slots)) if present is None else present
        self._align(4)
        vtable = len(self.bytes)
        self.bytes += struct.pack(f"<HH{n_slots}H", 4 + 2 * n_slots, 4 + 4 * n_slots,
                                  *(4 + 4 * f if f in present else 0 for f in range(n_slots)))
        self._align(4)
        table = len(self.bytes)
        self.bytes += struct.pack("<i", table - vtable) + b"\0" * (4 * n_slots)
        return table

    def vector(self, targets: list[int]) -> int:
        """A vector of tables: old positions, or a marker for the new Buffer/Metadata made later."""
        self._align(4)
        start = len(self.bytes)
        self.bytes += struct.pack("<I", len(targets)) + b"\0" * (4 * len(targets))
        for i, target in enumerate(targets):
            slot = start + 4 + 4 * i
            if target < 0:
                self.pending.setdefault(target, []).append(slot)
            else:
                self.link_old(slot, target)
        return start

    def new_entry(self, name: str, buffer_index: int, data: bytes) -> None:
        """The new Buffer (its data vector) and Metadata {name, buffer} tables the markers stand for."""
        buffer = self.table(1)
        for slot in self.pending.pop(self.new_buffer_marker):
            self.link(slot, buffer)
        entry = self.table(2)
        for slot in self.pending.pop(self.new_entry_marker):
            self.link(slot, entry)
        self.put_u32(entry + 8, buffer_index)
        self._align(4)
        self.link(entry + 4, len(self.bytes))
        encoded = name.encode("utf-8")
        self.bytes += struct.pack("<I", len(encoded)) + encoded + b"\0"
        self._align(16, extra=4)  # the data itself 16-byte aligned, like the converter's buffers
        self.link(buffer + 4, len(self.bytes))
        self.bytes += struct.pack("<I", len(data)) + data

    def finish(self, root: int) -> bytes:
        self._align(_HEAD_ALIGNMENT)
        shift = len(self.bytes)
        self.put_u32(0, root)
        for slot, old_position in self.old_links:
            self.put_u32(slot, old_position + shift - slot)
        return bytes(self.bytes)
