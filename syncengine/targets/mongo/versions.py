"""Per-key versions of what a two-way direction wrote into Mongo: ``_syncengine_versions``.

The Mongo counterpart of :mod:`syncengine.targets.postgres.versions` (last writer wins,
``timestamp`` in a two-way pipeline; :mod:`syncengine.conflicts.versions` says how versions
decide). One document per (direction, collection, key), written in the apply transaction
that writes the row or the delete: the source commit time of the change written (``ts``, in
microseconds since the epoch), its side, whether it is a delete, and ``h``, the hash of the
row written.

Why the hash: a MongoDB document carries no commit time and no trace of who wrote it (no
``xmin``, no replication origin). A document whose present content hashes as the row this
direction recorded is taken to be that write (:func:`mine`), with the recorded version; any
other present document was written by someone else, at a time this direction cannot know
(*unknown*: a change is applied over it provisionally, and the reverse direction, which reads
that write with its own time, carries it back when it was the later one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa
from pymongo import ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession

from syncengine.codecs.bson_arrow import decode_documents
from syncengine.conflicts.rows import (
    EXISTS,
    canonical,
    carried_columns,
    decode_rows,
    polars_schema,
    row_hashes,
    row_keys,
)
from syncengine.targets.base import TableSpec
from syncengine.targets.mongo import origin
from syncengine.targets.mongo.fresh import find_ids
from syncengine.targets.mongo.ops import documents_to_rows, key_ids
from syncengine.targets.mongo.state import shadow_ids

VERSIONS = origin.VERSIONS
#: what :func:`read` returns (the Postgres target's versions, plus the hash written)
SCHEMA = pa.schema(
    [
        pa.field("row_key", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("side", pa.string()),
        pa.field("deleted", pa.bool_()),
        pa.field("h", pa.string()),
    ]
)


def operations(
    pipeline: str, table: str, rows: pa.Table, spec: TableSpec | None = None
) -> list[ReplaceOne[Any]]:
    """Replace-upserts of the versions ``rows`` (``row_key``, ``ts``, ``side``, ``deleted``,
    ``hash``) of ``table``; with its ``spec``, each delete's version is also a tombstone: it
    carries the deleted document's ``_id`` (``id``), which the sibling's reader turns into an
    echo delete (:mod:`syncengine.sources.mongo.origins`). Why: a delete that met no document
    writes nothing else, so without it no echo would carry the delete's time back."""
    if not rows.num_rows:
        return []
    keys = rows.column("row_key").to_pylist()
    gone = tombstone_ids(spec, rows) if spec is not None else {}
    # microseconds since the epoch: a BSON date has milliseconds, a Postgres commit time more
    micros = rows.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    hashes = rows.column("hash").to_pylist() if "hash" in rows.column_names else [None] * len(keys)
    ops = []
    for _id, key, ts, side, deleted, h in zip(
        shadow_ids(pipeline, table, keys), keys, micros,
        rows.column("side").to_pylist(), rows.column("deleted").to_pylist(), hashes, strict=True,
    ):  # fmt: skip
        doc = {"_id": _id, "p": pipeline, "t": table, "k": key, "ts": ts, "side": side}
        if deleted and key in gone:
            doc["id"] = gone[key]
        ops.append(ReplaceOne({"_id": _id}, {**doc, "deleted": deleted, "h": h}, upsert=True))
    return ops


def tombstone_ids(spec: TableSpec, rows: pa.Table) -> dict[str, Any]:
    """row key → the ``_id`` of the document each delete among the versions ``rows`` removes
    (as the target writes it, so it is the ``_id`` a delete event of it would carry)."""
    gone = rows.filter(rows.column("deleted")).column("row_key")
    if not len(gone) or not spec.key:
        return {}
    schema = polars_schema(spec)
    keys = decode_rows(pl.Series(gone), {k: schema[k] for k in spec.key}).to_arrow()
    return dict(zip(gone.to_pylist(), key_ids(spec, keys), strict=True))


async def read(
    db: Any,
    pipeline: str,
    table: str,
    row_keys: Sequence[str],
    session: AsyncClientSession | None = None,
) -> pa.Table:
    """The versions recorded for these keys (:data:`SCHEMA`; a key never recorded is missing);
    ``session``: read inside its transaction."""
    ids = shadow_ids(pipeline, table, list(row_keys))
    docs = await find_ids(db[VERSIONS], ids, session) if ids else []
    micros = pa.array([d.get("ts") for d in docs], pa.int64())
    return pa.Table.from_arrays(
        [
            pa.array([d["k"] for d in docs], pa.string()),
            micros.cast(pa.timestamp("us", tz="UTC")),
            pa.array([d.get("side") for d in docs], pa.string()),
            pa.array([d.get("deleted") for d in docs], pa.bool_()),
            pa.array([d.get("h") for d in docs], pa.string()),
        ],
        schema=SCHEMA,
    )


def mine(row_key: pl.Series, hashes: pl.Series, recorded: pa.Table) -> pl.Series:
    """Per present row (``row_key``, its content's ``hashes``): it is this direction's last
    write, its content hashing as recorded for a row (not a delete)."""
    found = pl.from_arrow(recorded.select(["row_key", "deleted", "h"]))
    assert isinstance(found, pl.DataFrame)
    frame = pl.DataFrame({"row_key": row_key, "__hash": hashes}).join(
        found.unique("row_key", keep="last"), on="row_key", how="left", maintain_order="left"
    )
    same = (pl.col("h") == pl.col("__hash")) & ~pl.col("deleted")
    return frame.select(same.fill_null(False).alias("_mine")).to_series()


async def commit_times(db: Any, pipeline: str, spec: TableSpec, keys: pa.Table) -> pa.Table:
    """Key columns of the documents found, ``_ts`` (null: a document has no commit time) and
    ``_mine`` (:func:`mine`: the recorded version is that document's)."""
    docs = await find_ids(db[spec.name], key_ids(spec, keys)) if keys.num_rows else []
    whole = widened(spec, docs)
    found = canonical(documents_to_rows(whole, docs), whole)
    found = found.with_columns(pl.lit(True).alias(EXISTS))
    row_key = row_keys(found, spec.key)
    hashes = row_hashes(found, whole.schema.names, carried_columns(whole.schema))
    recorded = await read(db, pipeline, spec.name, row_key.to_list())
    out = found.select(list(spec.key)).to_arrow()
    times = pa.timestamp("us", tz="UTC")
    out = out.append_column(pa.field("_ts", times), pa.nulls(out.num_rows, times))
    return out.append_column("_mine", mine(row_key, hashes, recorded).to_arrow())


def widened(spec: TableSpec, docs: Sequence[dict[str, Any]]) -> TableSpec:
    """``spec``, or when it names nothing but the key, the key plus the top-level fields
    ``docs`` hold (typed as a Mongo source reads them), so a document hashes whole, as the row
    written was hashed.

    Why: a delete read from a Mongo source carries only ``_id``, and a whole-document copy's
    spec of such a batch is the key alone. Hashed over ``_id``, the document this direction
    wrote never matched its recorded hash, its version read as unknown, and the echo of a
    delete newer than that row never corrected it. A spec with columns is the one the rows
    were written with (a mapping's fields; a document's other fields are not the engine's)."""
    if set(spec.schema.names) - set(spec.key):
        return spec
    extra = {k for d in docs for k in d if k not in spec.schema.names}
    if not extra:
        return spec
    fields = decode_documents([{k: v for k, v in d.items() if k in extra} for d in docs])
    schema = pa.schema([*spec.schema, *fields.table.schema])
    return TableSpec(spec.name, spec.key, schema)
