"""A source batch as bytes and back, for the changes a paused table holds in the state store.

Arrow IPC (zstd-compressed) keeps every column exactly as the source decoded it (types, field
metadata such as ``pg_type``, before-images, unsent masks), so a released batch goes through
mapping, conflicts and apply as if it had just been read. JSON rows would lose types that have
no JSON form. The table name, key and the JSON-able batch meta ride in the schema metadata;
``resume`` is dropped: a held batch is applied on resume, long after its position was
checkpointed.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from syncengine.changes import ChangeBatch

_TABLE = b"syncengine.held.table"
_KEY = b"syncengine.held.key"
_META = b"syncengine.held.meta"
_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


def encode(batch: ChangeBatch) -> bytes:
    meta = {k: v for k, v in batch.meta.items() if k != "resume" and _jsonable(v)}
    extra = {_TABLE: batch.table.encode(), _KEY: json.dumps(batch.key).encode(),
             _META: json.dumps(meta).encode()}  # fmt: skip
    data = batch.data.replace_schema_metadata({**(batch.data.schema.metadata or {}), **extra})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema, options=_OPTIONS) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue().to_pybytes())


def decode(payload: bytes) -> ChangeBatch:
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        data = reader.read_all()
    metadata = dict(data.schema.metadata or {})
    table = metadata.pop(_TABLE).decode()
    key = tuple(json.loads(metadata.pop(_KEY)))
    meta = json.loads(metadata.pop(_META))
    return ChangeBatch(table, data.replace_schema_metadata(metadata or None), key, meta)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
