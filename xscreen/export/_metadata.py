"""Write the contract's metadata into model files (the runtime reads it back without TensorFlow)."""

from __future__ import annotations

import numpy as np

from ..runtime._contract import METADATA_KEY, ModelMetadata


def embed_tflite_metadata(model: bytes, metadata: ModelMetadata) -> bytes:
    """Return the TFLite flatbuffer with ``metadata`` stored as its ``xscreen`` metadata entry."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    tree = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    data = np.frombuffer(metadata.to_json().encode("utf-8"), dtype=np.uint8)
    earlier = [m for m in (tree.metadata or []) if _name(m) == METADATA_KEY]
    if earlier:  # rewrite the earlier entry's buffer in place, rather than leave it behind unused
        tree.buffers[earlier[0].buffer].data = data
        return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
    buffer = schema.BufferT()
    buffer.data = data
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(tree.buffers) - 1
    tree.metadata = list(tree.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def _name(entry) -> str:
    name = entry.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def embed_onnx_metadata(model, metadata: ModelMetadata) -> None:
    """Store ``metadata`` in an ``onnx.ModelProto``'s ``metadata_props`` (in place)."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    prop = model.metadata_props.add()
    prop.key = METADATA_KEY
    prop.value = metadata.to_json()
