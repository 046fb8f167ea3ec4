"""The Mongo target's own state documents (with transactions): shadow rows and checkpoints.

A shadow document is ``{_id, p, t, k, row_hash, base, position}``: ``_id`` is the flat string
``["<pipeline>","<table>","<row key>"]`` (compact JSON; a sub-document ``_id`` is slow to match
on some servers), ``k`` the row key, ``row_hash`` null for a tombstone (the key was deleted as
of ``position``; purged once the checkpoint has passed it).

A shadow row of a key detection found no shadow row for (``fresh``) is inserted, the rest are
replace-upserts; an insert that meets a row after all (a retried batch) makes the transaction
redo the shadow write with upserts.

:class:`MongoTargetState` is this module as the :mod:`syncengine.state.targetdb` protocols.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError

from syncengine.targets.base import Checkpoint, TableWrite
from syncengine.targets.mongo.bulk import Existing, exists
from syncengine.targets.mongo.fresh import find_ids
from syncengine.targets.mongo.ops import Op
from syncengine.targets.shadow import shadow_table

SHADOW = "_syncengine_shadow"
CHECKPOINTS = "_syncengine_checkpoints"
#: what read_shadow needs of a shadow document
SHADOW_FIELDS = {"k": 1, "row_hash": 1, "base": 1, "position": 1}

#: the tombstones of a pipeline by position, for :func:`purge_tombstones` (partial: only
#: tombstones are indexed). Created by the first purge: a pipeline that only backfills has no
#: tombstones, and its shadow writes do not maintain an index.
TOMBSTONES = {
    "keys": [("p", 1), ("position", 1)],
    "name": "syncengine_tombstones",
    "partialFilterExpression": {"row_hash": {"$type": "null"}},
}

# Characters json.dumps escapes other than '"' (ensure_ascii: everything beyond ASCII too).
_ESCAPED = r"[\x00-\x1f\\]"


def shadow_ids(pipeline: str, table: str, row_keys: Sequence[str] | pa.Array) -> list[str]:
    """``json.dumps([pipeline, table, key], separators=(",", ":"))`` for each key; built a
    column at a time when the keys need no escaping beyond their quotes (the usual case)."""
    keys = row_keys if isinstance(row_keys, pa.Array) else pa.array(row_keys, pa.string())
    if not len(keys):
        return []
    plain = (
        pc.all(pc.string_is_ascii(keys)).as_py()
        and not pc.any(pc.match_substring_regex(keys, _ESCAPED)).as_py()
    )
    if not plain:
        return [json.dumps([pipeline, table, k], separators=(",", ":")) for k in keys.to_pylist()]
    head = json.dumps([pipeline, table], separators=(",", ":"))[:-1] + ',"'
    quoted = pc.replace_substring(keys, '"', '\\"')
    joined: list[str] = pc.binary_join_element_wise(head, quoted, '"]', "").to_pylist()
    return joined


def shadow_operations(pipeline: str, write: TableWrite, *, inserts: bool = True) -> list[Op]:
    """Deletes and writes of a write's shadow rows: inserts for the keys detection found no
    shadow row for (``fresh``; when ``inserts``), replace-upserts for the others."""
    table = write.spec.name
    deletes = shadow_ids(pipeline, table, write.shadow.deletes)
    ops: list[Op] = [DeleteOne({"_id": i}) for i in deletes]
    upserts = write.shadow.upserts
    if upserts is None or not upserts.num_rows:
        return ops
    keys = upserts.column("row_key").combine_chunks().cast(pa.string())
    fresh = (
        pc.fill_null(upserts.column("fresh"), False).to_pylist()
        if inserts and "fresh" in upserts.column_names
        else [False] * len(keys)
    )
    columns = [_column(upserts, name) for name in ("row_hash", "base", "position")]
    rows = zip(shadow_ids(pipeline, table, keys), keys.to_pylist(), *columns, fresh, strict=True)
    for _id, k, row_hash, base, position, insert in rows:
        doc = {
            "_id": _id,
            "p": pipeline,
            "t": table,
            "k": k,
            "row_hash": row_hash,
            "base": base,
            "position": position,
        }
        ops.append(InsertOne(doc) if insert else ReplaceOne({"_id": _id}, doc, upsert=True))
    return ops


def _column(upserts: pa.Table, name: str) -> list[Any]:
    """A shadow column as Python values; absent (an older producer) reads as nulls."""
    if name not in upserts.column_names:
        return [None] * upserts.num_rows
    values: list[Any] = upserts.column(name).cast(pa.string()).to_pylist()
    return values


async def purge_tombstones(db: Any, pipeline: str, before: str, *, indexed: bool) -> None:
    """Drop tombstones older than the committed checkpoint ``before``: a replay starts after
    it, so they can no longer fence anything. Outside the data transaction: it is cleanup, and
    how many documents it touches is unbounded. Creates the index first unless ``indexed``."""
    if not indexed:
        spec = dict(TOMBSTONES)
        await db[SHADOW].create_index(spec.pop("keys"), **spec)  # idempotent
    await db[SHADOW].delete_many(
        {"p": pipeline, "row_hash": {"$type": "null"}, "position": {"$lt": before}}
    )


@dataclass(frozen=True)
class MongoSession:
    """Where state documents are read and written: the target database and, inside a
    transaction, its session (None: outside one)."""

    db: Any
    session: AsyncClientSession | None = None


class MongoTargetState:
    """One pipeline's state documents, as the :mod:`syncengine.state.targetdb` protocol
    ``TargetDatabaseState`` over a :class:`MongoSession`: writes given a session join its
    transaction."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        #: the tombstone index exists (created by this object's first purge)
        self._indexed = False

    def _checkpoint_id(self, stream: str) -> dict[str, str]:
        return {"p": self.pipeline, "s": stream}

    async def read_checkpoint(self, db: MongoSession, stream: str) -> str | None:
        doc = await db.db[CHECKPOINTS].find_one(
            {"_id": self._checkpoint_id(stream)}, session=db.session
        )
        return doc["position"] if doc else None

    async def write_checkpoint(self, db: MongoSession, checkpoint: Checkpoint) -> None:
        await db.db[CHECKPOINTS].update_one(
            {"_id": self._checkpoint_id(checkpoint.stream)},
            {"$set": {"position": checkpoint.position}},
            upsert=True,
            session=db.session,
        )

    async def delete_checkpoint(self, db: MongoSession, stream: str) -> None:
        await db.db[CHECKPOINTS].delete_one(
            {"_id": self._checkpoint_id(stream)}, session=db.session
        )

    async def read_shadow(self, db: MongoSession, table: str, row_keys: Sequence[str]) -> pa.Table:
        ids = shadow_ids(self.pipeline, table, row_keys)
        docs = await find_ids(db.db[SHADOW], ids, db.session, SHADOW_FIELDS)
        return shadow_table(
            [(d["k"], d.get("row_hash"), d.get("base"), d.get("position")) for d in docs]
        )

    async def write_shadow(
        self,
        db: MongoSession,
        writes: Sequence[TableWrite],
        truncated: Collection[str],
        *,
        fresh: bool = True,
    ) -> None:
        """Every write's shadow rows in one bulk write (after the truncated tables' rows are
        deleted); raises :class:`~.bulk.Existing` for :data:`SHADOW` when an insert of a
        ``fresh`` key met a document (redo with ``fresh=False``)."""
        state_ops: list[Any] = []
        shadow = db.db[SHADOW]
        for write in writes:
            if write.spec.name in truncated:
                await shadow.delete_many(
                    {"p": self.pipeline, "t": write.spec.name}, session=db.session
                )
            state_ops.extend(shadow_operations(self.pipeline, write, inserts=fresh))
        if not state_ops:
            return
        # one row per key in a compacted batch: these touch distinct documents, any order
        try:
            await shadow.bulk_write(state_ops, ordered=False, session=db.session)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(exists(e, state_ops[e["index"]]) for e in errors):
                raise Existing(SHADOW) from None
            raise

    async def purge_tombstones(self, db: MongoSession, before: str) -> None:
        """Outside the data transaction (``db`` without a session): it is cleanup, and how
        many documents it touches is unbounded."""
        await purge_tombstones(db.db, self.pipeline, before, indexed=self._indexed)
        self._indexed = True
