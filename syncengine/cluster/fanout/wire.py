"""What a fan-out message is: one partition's share of one table's changes of one group, as
Arrow IPC, with the headers a consumer needs to rebuild the :class:`ChangeBatch`.

Pure functions over bytes (no NATS here), so the format is unit-tested without a server.

Subjects: ``<stream>.p<n>`` carry data, ``<stream>.checkpoint`` carries the reader's checkpoint
(the source position a group ends at, published once all its data is stored). A message's ID
(``Nats-Msg-Id``, JetStream's deduplication key) is made of the stream, the group's position,
the table, the partition, the chunk and a digest of the payload: a reader that crashed and
publishes the same group again produces the same IDs and JetStream stores each message once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from syncengine.changes import AT_RESUME, BEFORE_PREFIX, DENSE_FENCE, REPLAYED, ChangeBatch

MSG_ID = "Nats-Msg-Id"
TABLE = "Syncengine-Table"
KEY = "Syncengine-Key"
GROUP = "Syncengine-Group"
PART = "Syncengine-Part"
META = "Syncengine-Meta"
POSITION = "Syncengine-Position"
#: batch meta that travels with the rows (facts about every row that the targets' position
#: fence needs; the rest is the reader's own)
CARRIED_META = (AT_RESUME, REPLAYED, DENSE_FENCE)
#: headers and subject take some of the server's max_payload
HEADROOM = 4096


@dataclass(frozen=True)
class Message:
    subject: str
    headers: dict[str, str]
    payload: bytes


@dataclass(frozen=True)
class Part:
    """A data message as a consumer reads it."""

    #: the group's position (the reader's checkpoint once the group is stored); None for
    #: changes published without one (snapshot chunks, parts of a huge source transaction)
    group: str | None
    #: (table, partition, chunk): one group publishes each at most once
    slot: tuple[str, int, int]
    batch: ChangeBatch


def data_subject(stream: str, partition: int) -> str:
    return f"{stream}.p{partition}"


def checkpoint_subject(stream: str) -> str:
    return f"{stream}.checkpoint"


def all_subjects(stream: str) -> str:
    return f"{stream}.>"


def encode(
    stream: str,
    batch: ChangeBatch,
    partition: int,
    group: str | None,
    max_bytes: int,
) -> list[Message]:
    """``batch`` (one partition's rows of one table) as messages of at most ``max_bytes``."""
    limit = max(1024, max_bytes - HEADROOM)
    payloads = list(_payloads(batch.data.combine_chunks(), limit))
    meta = {k: batch.meta[k] for k in CARRIED_META if batch.meta.get(k)}
    messages = []
    for chunk, payload in enumerate(payloads):
        digest = hashlib.sha256(payload).hexdigest()[:24]
        headers = {
            MSG_ID: f"{stream}:{group or '-'}:{batch.table}:{partition}.{chunk}:{digest}",
            TABLE: batch.table,
            KEY: json.dumps(list(batch.key)),
            PART: f"{partition}.{chunk}",
        }
        if group is not None:
            headers[GROUP] = group
        if meta:
            headers[META] = json.dumps(meta)
        messages.append(Message(data_subject(stream, partition), headers, payload))
    return messages


def checkpoint_message(stream: str, position: str) -> Message:
    headers = {MSG_ID: f"{stream}:checkpoint:{position}", POSITION: position}
    return Message(checkpoint_subject(stream), headers, b"")


def decode(headers: Mapping[str, str], payload: bytes) -> Part:
    """A data message back into the batch it carried."""
    reader = pa.ipc.open_stream(pa.py_buffer(payload))
    data = reader.read_all()
    partition, chunk = (int(x) for x in headers[PART].split("."))
    meta = json.loads(headers[META]) if META in headers else {}
    batch = ChangeBatch(headers[TABLE], data, tuple(json.loads(headers[KEY])), meta)
    return Part(headers.get(GROUP), (headers[TABLE], partition, chunk), batch)


def with_field_metadata(data: pa.Table, schemas: Sequence[pa.Schema]) -> pa.Table:
    """``data`` with the field metadata of the same columns in ``schemas`` where it has none
    (``pg_type``, ``bson_type``: what a target needs to write a value as its source type, an
    ObjectId rather than its hex text). Polars drops field metadata, so every step that
    concatenates through it (the runtime's mapping, :func:`concat_batches`) may lose them. A
    before-image column takes its column's."""
    known: dict[str, dict[bytes, bytes]] = {}
    for schema in schemas:
        for f in schema:
            if f.metadata and f.name not in known:
                known[f.name] = f.metadata
    fields = []
    changed = False
    for f in data.schema:
        metadata = known.get(f.name) or known.get(f.name.removeprefix(BEFORE_PREFIX))
        if metadata and not f.metadata:
            f, changed = f.with_metadata(metadata), True
        fields.append(f)
    if not changed:
        return data
    return pa.Table.from_arrays(data.columns, schema=pa.schema(fields, data.schema.metadata))


def _payloads(data: pa.Table, limit: int) -> Iterator[bytes]:
    """IPC streams of consecutive row ranges, each within ``limit`` bytes (halving a range
    until it fits; a single row larger than the limit is refused by the server)."""
    payload = _ipc(data)
    if len(payload) <= limit or data.num_rows <= 1:
        yield payload
        return
    half = data.num_rows // 2
    yield from _payloads(data.slice(0, half), limit)
    yield from _payloads(data.slice(half), limit)


def _ipc(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue().to_pybytes())
