"""Decoded pgoutput messages → ChangeBatches, with bounded memory and commit-boundary resumes.

Pure (no I/O, no clock): the reader feeds messages in order and decides when time is up.

* Rows are kept as text values per column (one list per column) and turned into Arrow
  column-wise when a batch is cut (:func:`.columns.to_arrow`).
* A table's buffer is cut at ``max_rows``; then every buffer is flushed, so memory is bounded by
  ``tables × max_rows`` however big a transaction is.
* ``meta["resume"]`` is the end LSN of the last *committed* transaction, and every row emitted
  up to and including the batch that carries it belongs to a transaction that ends at or before
  it: a flush inside a transaction emits the completed transactions' rows first (the last of
  those batches carries the resume), then the open transaction's rows without one; once rows of
  the open transaction are out, no resume is handed out until its commit. The runtime commits
  a checkpoint only with the rows it covers (see :mod:`syncengine.runtime.runner`).
* A new Relation message whose columns differ cuts the table's buffer: the schema changes
  between batches, never inside one.
* An update that changes the row's key (pgoutput sends the old key 'K', or the old row 'O'
  under REPLICA IDENTITY FULL) becomes a delete of the old key then an update of the new key,
  in that order: targets apply set-wise by key and cannot find a row by a key it no longer has
  (Postgres's own apply worker updates the row it finds by the old key). Values the new image
  left unsent (unchanged TOAST) are taken from an 'O' old row, where they are the same value.
* Row ``_pos`` is ``<lsn_to_pos(commit record LSN)>.<row number in the transaction, 8 hex>``:
  unique, ordered across transactions by commit order, and below the transaction's resume
  position (the commit's end LSN) in string order.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from syncengine.changes import (
    BEFORE_PREFIX,
    ECHO,
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

_U32_AT = struct.Struct("!I").unpack_from


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
            # mypy cannot narrow the UNCHANGED sentinel by identity; it was replaced above
            column.append(value)  # type: ignore[arg-type]
        if old is not None and self.before is None:
            self.before = [[None] * row for _ in self.relation.columns]
        if self.before is not None:
            for i, column in enumerate(self.before):
                value = old[i] if old is not None else None
                # mypy cannot narrow the UNCHANGED sentinel by identity
                column.append(None if value is po.UNCHANGED else value)  # type: ignore[arg-type]

    def add_wire(self, kind: int, data: bytes, pos: str, ts: int, xid: int) -> None:
        """One Insert, Update without an old image, or Delete payload (``kind``: its first
        byte), decoded straight into the column lists (:func:`.pgoutput.tuple_into`): what
        :meth:`add` does for the decoded message, with no message object in between. On
        malformed bytes the buffer is rolled back to its rows before and DecodeError raised."""
        row = len(self.ops)
        before = self.before
        try:
            tag = data[5]
            if kind == 0x44 and (tag == 0x4B or tag == 0x4F):  # Delete 'K' / 'O'
                op = OP_DELETE
            elif tag == 0x4E:  # Insert / Update 'N'
                op = OP_INSERT if kind == 0x49 else OP_UPDATE
            else:
                raise DecodeError(f"unexpected tuple tag {tag!r}", offset=5)
            end, unchanged = po.tuple_into(data, 6, self.values)
            if end != len(data):
                raise DecodeError(
                    f"{len(data) - end} unexpected trailing bytes after {chr(kind)!r} message",
                    offset=end,
                )
        except DecodeError:
            for column in self.values:
                del column[row:]
            raise
        self.ops.append(op)
        self.pos.append(pos)
        self.ts.append(ts)
        self.txid.append(xid)
        for i in unchanged:
            self.unsent.setdefault(i, []).append(row)
        if op == OP_DELETE:
            if before is None:
                before = self.before = [[None] * row for _ in self.relation.columns]
            for target, source in zip(before, self.values, strict=True):
                target.append(source[-1])
        elif before is not None:
            for target in before:
                target.append(None)

    def to_batch(self, meta: dict[str, object]) -> ChangeBatch:
        n = len(self.ops)
        fields: list[pa.Field] = []
        arrays: list[pa.Array] = []
        names = [c.name for c in self.relation.columns]
        for name, type_, column in zip(names, self.types, self.values, strict=True):
            arrays.append(to_arrow(pa.array(column, pa.binary()), type_, name))
            fields.append(type_.field(name, arrays[-1].type))
        fields.extend(META_SCHEMA)
        arrays.append(pa.array(self.ops, pa.string()))
        arrays.append(pa.array(self.pos, pa.string()))
        arrays.append(pa.array(self.ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")))
        arrays.append(pa.array(self.txid, pa.int64()))
        if self.before is not None:
            for name, type_, column in zip(names, self.types, self.before, strict=True):
                arrays.append(to_arrow(pa.array(column, pa.binary()), type_, name))
                fields.append(type_.field(BEFORE_PREFIX + name, arrays[-1].type))
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
        self,
        max_rows: int,
        keys: Mapping[str, tuple[str, ...]] | None = None,
        idle_table: str = "",
        typedefs: Mapping[int, str] | None = None,
        own_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.max_rows = max_rows
        #: replication origins of the engine's own writes (two-way); ``skipping``: the open
        #: transaction carries one, its rows are emitted as ECHO batches
        self.own_origins = own_origins
        self.skipping = False
        #: type oid → ``pg_typedefs`` of user-defined column types (read by the source)
        self.typedefs = dict(typedefs or {})
        #: keys by ``schema.table`` (``admin.table_keys``; ``()``: keyless)
        self.keys = dict(keys or {})
        self.idle_table = idle_table
        self.relations: dict[int, po.Relation] = {}
        self.custom_types: dict[int, str] = {}
        self.buffers: dict[int, _Buffer] = {}
        #: end LSN of the last commit seen, and of the last one handed out as a resume
        self.boundary: int | None = None
        self.emitted: int | None = None
        self.txn: po.Begin | None = None
        #: rows each buffer held when the open transaction began (later rows are its own), and
        #: whether rows of the open transaction were emitted already
        self.marks: dict[int, int] = {}
        self.open_emitted = False
        self.seq = 0
        self.prefix = ""
        self.commit_us = 0
        #: rows may skip :meth:`feed` (it is not overridden)
        self._rows_direct = type(self).feed is ChangeAssembler.feed

    @property
    def pending_rows(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    @property
    def in_transaction(self) -> bool:
        return self.txn is not None

    def feed(self, msg: po.PgOutputMessage) -> list[ChangeBatch]:
        if isinstance(msg, po.Begin):
            self.txn, self.seq, self.skipping = msg, 0, False
            self.marks = {oid: len(b) for oid, b in self.buffers.items()}
            self.open_emitted = False
            self.prefix = lsn_to_pos(msg.final_lsn) + "."
            self.commit_us = pg_time_to_unix_us(msg.commit_time)
            return []
        if isinstance(msg, po.Commit):
            echo, self.skipping = self.skipping, False
            self.txn, self.open_emitted = None, False
            self.boundary = msg.end_lsn
            return _echoes(self.flush()) if echo else []
        if isinstance(msg, po.Relation):
            return self._relation(msg)
        if isinstance(msg, po.Origin) and msg.name in self.own_origins:
            # sent after Begin, before the rows: a transaction the engine applied itself (two-way).
            # Its rows go out in batches of their own marked ECHO (never applied: they refresh
            # the shadow, syncengine.conflicts.resolver.refresh)
            done = self.flush()
            self.skipping = True
            return done
        if isinstance(msg, po.TypeInfo):
            prefix = "" if msg.namespace in ("public", "pg_catalog") else f"{msg.namespace}."
            self.custom_types[msg.oid] = prefix + msg.name
            return []
        if isinstance(msg, po.Insert):
            self._row(msg.relation, OP_INSERT, msg.new)
        elif isinstance(msg, po.Update):
            self._update(msg)
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

    def feed_payload(self, payload: bytes) -> list[ChangeBatch]:
        """``feed(pgoutput.decode(payload))``, the stream's entry point. Inside a transaction,
        an Insert, a Delete or an Update without an old image of a known relation (nearly
        every message of a busy stream) is decoded straight into its table's column buffer
        (:meth:`_Buffer.add_wire`); the rows, positions and errors are the same. A subclass
        that overrides :meth:`feed` (:class:`.deletes.DeletesOnly`) gets every message."""
        txn = self.txn
        if txn is not None and len(payload) > 6 and self._rows_direct:
            kind = payload[0]
            if (kind == 0x49 or kind == 0x44 or (kind == 0x55 and payload[5] == 0x4E)) and (
                oid := _U32_AT(payload, 1)[0]
            ) in self.relations:
                buffer = self._buffer(oid)
                buffer.add_wire(
                    kind, payload, f"{self.prefix}{self.seq:08X}", self.commit_us, txn.xid
                )
                self.seq += 1
                return self.flush() if len(buffer) >= self.max_rows else []
        return self.feed(po.decode(payload))

    def flush(self, idle: bool = False) -> list[ChangeBatch]:
        """Emit every pending row: committed transactions' rows first, the last of those
        batches carrying a new resume (an empty batch carries it when there are none and
        ``idle``, or when the open transaction's rows follow), then the open transaction's."""
        done: list[ChangeBatch] = []  # rows of committed transactions
        open_: list[ChangeBatch] = []  # rows of the open transaction
        for oid, buffer in self.buffers.items():
            if not buffer:
                continue
            batch = buffer.to_batch({"relation": oid})
            mark = len(buffer) if self.txn is None else min(self.marks.get(oid, 0), len(buffer))
            if mark == len(buffer):
                done.append(batch)
            elif mark == 0:
                open_.append(batch)
            else:
                done.append(_rows(batch, 0, mark))
                open_.append(_rows(batch, mark, len(buffer)))
        self.buffers = {oid: b for oid, b in self.buffers.items() if not b}
        self.marks = {}
        boundary = self.boundary
        if boundary is not None and boundary != self.emitted and not self.open_emitted:
            if not done and (idle or open_):
                # nothing else to carry it: an empty batch, ahead of the open transaction's rows
                done = [ChangeBatch(self.idle_table, META_SCHEMA.empty_table(), (), {})]
            if done:
                last = done[-1]
                resume = lsn_to_pos(boundary)
                done[-1] = ChangeBatch(
                    last.table, last.data, last.key, {**last.meta, "resume": resume}
                )
                self.emitted = boundary
        if open_:
            self.open_emitted = True
            if self.skipping:
                open_ = _echoes(open_)
        return done + open_

    def _relation(self, msg: po.Relation) -> list[ChangeBatch]:
        old = self.relations.get(msg.oid)
        self.relations[msg.oid] = msg
        if old == msg:
            return []  # resent after a cache invalidation: same schema, keep the buffer
        buffer = self.buffers.pop(msg.oid, None)
        mark = self.marks.pop(msg.oid, 0)
        if not buffer:
            return []
        if self.txn is not None and mark < len(buffer):
            self.open_emitted = True  # no resume may follow until this transaction commits
        return [buffer.to_batch({"relation": msg.oid})]

    def column_types(self, oid: int) -> dict[str, PgType]:
        """The Postgres types of a relation's columns by name (empty when it is unknown)."""
        relation = self.relations.get(oid)
        if relation is None:
            return {}
        return dict(zip((c.name for c in relation.columns), self._types(relation), strict=True))

    def _types(self, relation: po.Relation) -> list[PgType]:
        return [
            pg_type(c.type_oid, c.typmod, self.custom_types, self.typedefs.get(c.type_oid, ""))
            for c in relation.columns
        ]

    def _buffer(self, oid: int) -> _Buffer:
        buffer = self.buffers.get(oid)
        if buffer is None:
            relation = self.relations.get(oid)
            if relation is None:
                raise DecodeError(
                    f"change for relation {oid} before its Relation message", offset=0
                )
            types = self._types(relation)
            # a table the catalog knows as keyless keeps key (): REPLICA IDENTITY FULL flags
            # every column as key, but no column set is unique there (docs/postgres-source.md)
            if relation.qualified in self.keys:
                key = self.keys[relation.qualified]
            else:
                key = tuple(c.name for c in relation.columns if c.is_key)
            buffer = self.buffers[oid] = _Buffer(relation, types, key)
        return buffer

    def _update(self, msg: po.Update) -> None:
        old, new = msg.old, msg.new
        if old is not None and _key_moved(self._buffer(msg.relation), new, old):
            self._row(msg.relation, OP_DELETE, None, old)
            if msg.old_kind == "O":  # the whole old row: an unsent value is the old one
                new = tuple(o if n is po.UNCHANGED else n for n, o in zip(new, old, strict=True))
        self._row(msg.relation, OP_UPDATE, new, old)

    def _row(self, oid: int, op: str, new: po.Tuple | None, old: po.Tuple | None = None) -> None:
        txn = self.txn
        if txn is None:
            raise DecodeError("row change outside a transaction", offset=0)
        pos = f"{self.prefix}{self.seq:08X}"
        self.seq += 1
        self._buffer(oid).add(op, pos, self.commit_us, txn.xid, new, old)


def _key_moved(buffer: _Buffer, new: po.Tuple, old: po.Tuple) -> bool:
    """Whether an update's old image names another key than its new image (text forms of one
    type compare as values; an unsent key value is an unchanged one)."""
    names = [c.name for c in buffer.relation.columns]
    if len(new) != len(old) or len(new) != len(names):
        return False  # malformed: add() names the problem
    for column in buffer.key:
        if column not in names:
            continue
        i = names.index(column)
        if new[i] is not po.UNCHANGED and old[i] is not po.UNCHANGED and new[i] != old[i]:
            return True
    return False


def _echoes(batches: list[ChangeBatch]) -> list[ChangeBatch]:
    return [ChangeBatch(b.table, b.data, b.key, {**b.meta, ECHO: True}) for b in batches]


def _rows(batch: ChangeBatch, start: int, stop: int) -> ChangeBatch:
    """Rows [start, stop) of ``batch`` (zero-copy)."""
    return ChangeBatch(batch.table, batch.data.slice(start, stop - start), batch.key, batch.meta)
