"""Rows of one collection → one ChangeBatch (pure; shared by the stream and the snapshot).

Columns are the union of the documents' fields (:mod:`syncengine.codecs.bson_arrow`). A field a
document lacks is *unsent* (``_unsent.<field>`` true: the target keeps or omits it); a field an
update removed is in the row's document as null (see :mod:`~syncengine.sources.mongo.events`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from syncengine.changes import BEFORE_PREFIX, OP_READ, ChangeBatch
from syncengine.codecs.bson_arrow import Decoded, decode_documents
from syncengine.sources.mongo.events import Row

log = logging.getLogger("syncengine.sources.mongo")

KEY = ("_id",)


def rows_to_batch(
    collection: str,
    rows: Sequence[Row],
    *,
    before_images: bool = False,
    resume: str | None = None,
) -> ChangeBatch:
    """One batch for ``rows`` (all of ``collection``), ``meta["resume"]`` set when given."""
    decoded = decode_documents([r.doc for r in rows])
    _log_warnings(collection, decoded.warnings, [w for r in rows for w in r.warnings])
    before = None
    if before_images:
        images = decode_documents([r.before or {} for r in rows])
        _log_warnings(collection, images.warnings, [])
        if images.table.num_columns:
            before = images.table
    meta: dict[str, object] = {"resume": resume} if resume is not None else {}
    batch = ChangeBatch.build(
        collection,
        decoded.table,
        ops=[r.op for r in rows],
        positions=[r.pos for r in rows],
        ts=pa.array([r.ts for r in rows], pa.timestamp("us", tz="UTC")),
        txid=[r.txid for r in rows],
        key=KEY,
        before=before,
        unsent=decoded.missing,
        meta=meta,
    )
    return with_field_metadata(batch, decoded.table.schema, before.schema if before else None)


def snapshot_batch(
    collection: str, decoded: Decoded, position: str, ts: datetime, meta: dict[str, object]
) -> ChangeBatch:
    """``r`` rows of a snapshot scan; fields a document lacks are unsent."""
    n = decoded.table.num_rows
    batch = ChangeBatch.build(
        collection,
        decoded.table,
        ops=pa.array([OP_READ] * n, pa.string()),
        positions=pa.array([position] * n, pa.string()),
        ts=pa.array([ts] * n, pa.timestamp("us", tz="UTC")),
        key=KEY,
        unsent=decoded.missing,
        meta=meta,
    )
    return with_field_metadata(batch, decoded.table.schema, None)


def with_field_metadata(
    batch: ChangeBatch, rows: pa.Schema, before: pa.Schema | None
) -> ChangeBatch:
    """Put the ``bson_type`` field metadata back (``ChangeBatch.build`` keeps arrays only)."""
    wanted = {f.name: f.metadata for f in rows}
    wanted.update({BEFORE_PREFIX + f.name: f.metadata for f in before or []})
    schema = pa.schema(
        [f.with_metadata(wanted[f.name]) if wanted.get(f.name) else f for f in batch.data.schema]
    )
    return batch.replace(pa.Table.from_arrays(batch.data.columns, schema=schema))


def _log_warnings(collection: str, type_warnings: list[str], row_warnings: list[str]) -> None:
    for message in type_warnings:
        log.warning("%s: %s", collection, message)
    for message in row_warnings:
        log.warning("%s: %s", collection, message)
