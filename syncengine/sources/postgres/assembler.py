"""Decoded pgoutput messages → ChangeBatches, with bounded memory and commit-boundary resumes.

Pure (no I/O, no clock): the reader feeds messages in order and decides when time is up.

* Rows are kept as text values per column (one list per column) and turned into Arrow
  column-wise when a batch is cut (:func:`.columns.to_arrow`).
* A table's buffer is cut at ``max_rows``; then every buffer is flushed, so memory is bounded by
  ``tables × max_rows`` however big a transaction is.
* ``meta["resume"]`` goes on the last batch of a flush only, and is the end LSN of the last
  *committed* transaction whose rows are all emitted — inside a big transaction that is the
  previous boundary, so a crash replays the whole transaction (apply is idempotent).
* A new Relation message whose columns differ cuts the table's buffer: the schema changes
  between batches, never inside one.
* Row ``_pos`` is ``<lsn_to_pos(commit record LSN)>.<row number in the transaction, 8 hex>``:
  unique, ordered across transactions by commit order, and below the transaction's resume
  position (the commit's end LSN) in string order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from syncengine.changes import (
    BEFORE_PREFIX,
    META_SCHEMA,
    OP_DELETE,
    OP_INSERT,
    OP_TRUNCATE,
    OP_UPDATE,
    UNSENT_PREFIX,
    ChangeBatch,
    lsn_to_pos,
)
from syncengine.errors import DecodeError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.columns import PgType, pg_type, to_arrow
from syncengine.sources.postgres.wire import pg_time_to_unix_us


@dataclass
class _Buffer:
    """Pending rows of one relation (one schema), column by column."""

    relation: po.Relation
    types: list[PgType]
    key: tuple[str, ...]
    ops: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    ts: list[int | None] = field(default_factory=list)
    txid: list[int | None] = field(default_factory=list)
    values: list[list[bytes | None]] = field(default_factory=list)
    before: list[list[bytes | None]] | None = None
    #: column index -> row numbers whose value was not sent
    unsent: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.relation.columns]

    def __len__(self) -> int:
        return len(self.ops)

    def add(
        self,
        op: str,
        pos: str,
        ts: int | None,
        xid: int | None,
        new: po.Tuple | None,
        old: po.Tuple | None = None,
    ) -> None:
        width = len(self.relation.columns)
        row = len(self.ops)
        for image in (new, old):
            if image is not None and len(image) != width:
                raise DecodeError(
                    f"{self.relation.qualified}: tuple has {len(image)} columns, relation "
                    f"has {width}",
                    offset=0,
                )
        self.ops.append(op)
        self.pos.append(pos)
        self.ts.append(ts)
        self.txid.append(xid)
        image = new if new is not None else old
        for i, column in enumerate(self.values):
            value = image[i] if image is not None else None
            if value is po.UNCHANGED:
                self.unsent.setdefault(i, []).append(row)
                value = None
            column.append(value)  # type: ignore[arg-type]
        if old is not None and self.before is None:
            self.before = [[None] * row for _ in self.relation.columns]
        if self.before is not None:
            for i, column in enumerate(self.before):
                value = old[i] if old is not None else None
                column.append(None if value is po.UNCHANGED else value)  # type: ignore[arg-type]

    def to_batch(self, meta: dict[str, object]) -> ChangeBatch:
        n = len(self.ops)
        fields: list[pa.Field] = []
        arrays: list[pa.Array] = []
        names = [c.name for c in self.relation.columns]
        for name, type_, column in zip(names, self.types, self.values, strict=True):
            fields.append(type_.field(name))
            arrays.append(to_arrow(pa.array(column, pa.binary()), type_, name))
        fields.extend(META_SCHEMA)
        arrays.append(pa.array(self.ops, pa.string()))
        arrays.append(pa.array(self.pos, pa.string()))
        arrays.append(pa.array(self.ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")))
        arrays.append(pa.array(self.txid, pa.int64()))
        if self.before is not None:
            for name, type_, column in zip(names, self.types, self.before, strict=True):
                fields.append(type_.field(BEFORE_PREFIX + name))
                arrays.append(to_arrow(pa.array(column, pa.binary()), type_, name))
        for i, rows in sorted(self.unsent.items()):
            mask = [False] * n
            for row in rows:
                mask[row] = True
            fields.append(pa.field(UNSENT_PREFIX + names[i], pa.bool_()))
            arrays.append(pa.array(mask, pa.bool_()))
        data = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        return ChangeBatch(self.relation.qualified, data, self.key, meta)


class ChangeAssembler:
    """Feeds on pgoutput messages, returns the batches that are ready."""

    def __init__(
        self, max_rows: int, keys: Mapping[str, tuple[str, ...]] | None = None, idle_table: str = ""
    ) -> None:
        self.max_rows = max_rows
        #: primary keys by ``schema.table`` (REPLICA IDENTITY FULL flags every column)
        self.keys = dict(keys or {})
        self.idle_table = idle_table
        self.relations: dict[int, po.Relation] = {}
        self.custom_types: dict[int, str] = {}
        self.buffers: dict[int, _Buffer] = {}
        #: end LSN of the last commit seen, and of the last one handed out as a resume
        self.boundary: int | None = None
        self.emitted: int | None = None
        self.txn: po.Begin | None = None
        self.seq = 0
        self.prefix = ""
        self.commit_us = 0

    @property
    def pending_rows(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    @property
    def in_transaction(self) -> bool:
        return self.txn is not None

    def feed(self, msg: po.PgOutputMessage) -> list[ChangeBatch]:
        if isinstance(msg, po.Begin):
            self.txn, self.seq = msg, 0
            self.prefix = lsn_to_pos(msg.final_lsn) + "."
            self.commit_us = pg_time_to_unix_us(msg.commit_time)
            return []
        if isinstance(msg, po.Commit):
            self.txn = None
            self.boundary = msg.end_lsn
            return []
        if isinstance(msg, po.Relation):
            return self._relation(msg)
        if isinstance(msg, po.TypeInfo):
            prefix = "" if msg.namespace in ("public", "pg_catalog") else f"{msg.namespace}."
            self.custom_types[msg.oid] = prefix + msg.name
            return []
        if isinstance(msg, po.Insert):
            self._row(msg.relation, OP_INSERT, msg.new)
        elif isinstance(msg, po.Update):
            self._row(msg.relation, OP_UPDATE, msg.new, msg.old)
        elif isinstance(msg, po.Delete):
            self._row(msg.relation, OP_DELETE, None, msg.old)
        elif isinstance(msg, po.Truncate):
            for oid in msg.relations:
                self._row(oid, OP_TRUNCATE, None)
        else:
            return []  # Origin, Message: nothing to emit
        if any(len(b) >= self.max_rows for b in self.buffers.values()):
            return self.flush()
        return []

    def flush(self, idle: bool = False) -> list[ChangeBatch]:
        """Emit every pending row; ``idle`` also emits an empty batch to carry a new resume."""
        batches = [b.to_batch({"relation": b.relation.oid}) for b in self.buffers.values() if b]
        self.buffers = {oid: b for oid, b in self.buffers.items() if not b}
        if self.boundary is not None and self.boundary != self.emitted:
            if not batches and idle:
                empty = META_SCHEMA.empty_table()
                batches = [ChangeBatch(self.idle_table, empty, (), {})]
            if batches:
                resume = lsn_to_pos(self.boundary)
                last = batches[-1]
                batches[-1] = ChangeBatch(
                    last.table, last.data, last.key, {**last.meta, "resume": resume}
                )
                self.emitted = self.boundary
        return batches

    def _relation(self, msg: po.Relation) -> list[ChangeBatch]:
        old = self.relations.get(msg.oid)
        self.relations[msg.oid] = msg
        if old == msg:
            return []  # resent after a cache invalidation: same schema, keep the buffer
        buffer = self.buffers.pop(msg.oid, None)
        return [buffer.to_batch({"relation": msg.oid})] if buffer else []

    def _buffer(self, oid: int) -> _Buffer:
        buffer = self.buffers.get(oid)
        if buffer is None:
            relation = self.relations.get(oid)
            if relation is None:
                raise DecodeError(
                    f"change for relation {oid} before its Relation message", offset=0
                )
            types = [pg_type(c.type_oid, c.typmod, self.custom_types) for c in relation.columns]
            key = self.keys.get(relation.qualified) or tuple(
                c.name for c in relation.columns if c.is_key
            )
            buffer = self.buffers[oid] = _Buffer(relation, types, key)
        return buffer

    def _row(self, oid: int, op: str, new: po.Tuple | None, old: po.Tuple | None = None) -> None:
        txn = self.txn
        if txn is None:
            raise DecodeError("row change outside a transaction", offset=0)
        pos = f"{self.prefix}{self.seq:08X}"
        self.seq += 1
        self._buffer(oid).add(op, pos, self.commit_us, txn.xid, new, old)
