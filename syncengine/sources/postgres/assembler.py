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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncengine import tombstones
from syncengine.changes import (
    ECHO,
    META_SCHEMA,
    OP_DELETE,
    OP_INSERT,
    OP_TRUNCATE,
    OP_UPDATE,
    ChangeBatch,
    lsn_to_pos,
)
from syncengine.errors import DecodeError, FatalError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.columns import PgType, pg_type
from syncengine.sources.postgres.rowbuffer import RowBuffer
from syncengine.sources.postgres.wire import pg_time_to_unix_us

_U32_AT = struct.Struct("!I").unpack_from
#: an XLogData message: 'w', its WAL start, end and send time, then one pgoutput message
_XLOG_HEADER = 25
#: an XLogData this long or shorter is no row message with a value (a row message's kind,
#: relation and tuple tag alone are 6 bytes): the general path parses it, or reports it broken
_XLOG_ROW_MIN = _XLOG_HEADER + 6
#: pgoutput's Insert, Update, Delete and Truncate message types
_ROW_MESSAGES = (b"I", b"U", b"D", b"T")


#: what :meth:`ChangeAssembler.take_rows` did: the batches it cut, the message it stopped at as
#: ``get_copy_data`` returned it (size 0: none) and the last XLogData it took (None: none),
#: whose WAL start the stream reports as received. A plain tuple: a named one cost a third of a
#: µs to make, and most transactions of a busy OLTP load stop it at every message
Taken = tuple[Sequence[ChangeBatch], int, Any, Any]
#: no batches (shared: never appended to)
_NO_BATCHES: tuple[ChangeBatch, ...] = ()


class ChangeAssembler:
    """Feeds on pgoutput messages, returns the batches that are ready."""

    def __init__(
        self,
        max_rows: int,
        keys: Mapping[str, tuple[str, ...]] | None = None,
        idle_table: str = "",
        typedefs: Mapping[int, str] | None = None,
        own_origins: frozenset[str] = frozenset(),
        ignore_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.max_rows = max_rows
        #: replication origins of the engine's own writes (two-way); ``skipping``: the open
        #: transaction carries one, its rows are emitted as ECHO batches
        self.own_origins = own_origins
        self.skipping = False
        #: origins whose transactions are dropped whole (a mesh: other nodes' writes into
        #: this one, which they send everywhere themselves); ``ignoring``: the open one does
        self.ignore_origins = ignore_origins
        self.ignoring = False
        #: type oid → ``pg_typedefs`` of user-defined column types (read by the source)
        self.typedefs = dict(typedefs or {})
        #: keys by ``schema.table`` (``admin.table_keys``; ``()``: keyless), and the WAL
        #: position before they were read (None: not checked): a Relation message of a later
        #: transaction whose identity lacks a table's key means the key changed
        #: (:meth:`_same_key`)
        self.keys = dict(keys or {})
        self.keys_at: int | None = None
        self.idle_table = idle_table
        self.relations: dict[int, po.Relation] = {}
        self.custom_types: dict[int, str] = {}
        self.buffers: dict[int, RowBuffer] = {}
        #: numbers the transactions, so a buffer knows when its raw rows start a new one
        self.gen = 0
        #: end LSN of the last commit seen, and of the last one handed out as a resume
        self.boundary: int | None = None
        self.emitted: int | None = None
        self.txn: po.Begin | None = None
        #: whether rows of the open transaction were emitted already (each buffer's ``mark`` is
        #: where its rows of the open transaction start)
        self.open_emitted = False
        self.seq = 0
        self.prefix = ""
        self.commit_us = 0
        #: rows may skip :meth:`feed` (it is not overridden)
        self._rows_direct = type(self).feed is ChangeAssembler.feed

    def add_tables(self, keys: Mapping[str, tuple[str, ...]], typedefs: Mapping[int, str]) -> None:
        """Tables about to join the publication of the running stream: their keys and the
        user types of their columns, known before their first Relation message."""
        self.keys.update(keys)
        self.typedefs.update(typedefs)

    @property
    def pending_rows(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    @property
    def in_transaction(self) -> bool:
        return self.txn is not None

    def feed(self, msg: po.PgOutputMessage) -> list[ChangeBatch]:
        if isinstance(msg, po.Begin):
            self.txn, self.seq, self.skipping, self.ignoring = msg, 0, False, False
            self.gen += 1
            for buffer in self.buffers.values():
                buffer.mark = len(buffer)
            self.open_emitted = False
            self.prefix = lsn_to_pos(msg.final_lsn) + "."
            self.commit_us = pg_time_to_unix_us(msg.commit_time)
            return []
        if isinstance(msg, po.Commit):
            echo, self.skipping, self.ignoring = self.skipping, False, False
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
        if isinstance(msg, po.Origin) and msg.name in self.ignore_origins:
            # its rows are not kept; its commit still moves the resume position
            self.ignoring = True
            return []
        if isinstance(msg, po.TypeInfo):
            prefix = "" if msg.namespace in ("public", "pg_catalog") else f"{msg.namespace}."
            self.custom_types[msg.oid] = prefix + msg.name
            return []
        if self.ignoring and isinstance(msg, po.Insert | po.Update | po.Delete | po.Truncate):
            return []
        if isinstance(msg, po.Message) and msg.prefix == tombstones.PREFIX:
            if self.skipping and msg.transactional:  # the sibling's deletes of absent rows
                self._tombstones(msg.content)
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
        an Insert, Update or Delete of a known relation (nearly every message of a busy stream)
        is kept as its bytes and decoded with the rest of its table's batch when the batch is
        cut (:mod:`.rowdecode`); the rows and positions are the same, and malformed bytes
        raise at the cut. A subclass that overrides :meth:`feed` (:class:`.deletes.DeletesOnly`)
        gets every message."""
        txn = self.txn
        if self.ignoring and payload[:1] in _ROW_MESSAGES:
            return []  # a row of an ignored origin's transaction: not even decoded
        if txn is not None and len(payload) > 6 and self._rows_direct:
            kind = payload[0]
            if (kind == 0x49 or kind == 0x44 or kind == 0x55) and (
                oid := _U32_AT(payload, 1)[0]
            ) in self.relations:
                buffer = self.buffers.get(oid)
                if buffer is None:
                    buffer = self._buffer(oid)
                if buffer.run_gen != self.gen:
                    buffer.open_run(self.gen, self.prefix, self.commit_us, txn.xid)
                raw = buffer.raw
                raw.append(payload)
                buffer.raw_seq.append(self.seq)
                # an update with an old image owns two positions (see _update)
                self.seq += 2 if kind == 0x55 and payload[5] != 0x4E else 1
                # len(buffer), without the method call (once per message)
                if buffer.sealed + len(buffer.ops) + len(raw) >= self.max_rows:
                    return self.flush()
                return []
        return self.feed(po.decode(payload))

    def take_rows(self, read: Callable[[int], tuple[int, Any]]) -> Taken:
        """The row messages libpq has buffered, taken off ``read`` (the replication
        connection's ``pgconn.get_copy_data``) whole XLogData messages at a time: the stream's
        per-message path of :meth:`feed_payload` without its per-message calls, the copy of
        each XLogData's payload into a message of its own and a look at the clock. The read
        loop over a fake libpq: ``pg_cdc``'s rows 1.55 → 0.98 µs a change, pgbench's (one
        row per table per transaction) 3.67 → 3.39.

        Inside a transaction it takes every Insert, Update and Delete of a known relation, and
        stops at the first other message, which it returns unread for the caller to parse and
        feed (every Begin, Commit, Relation, keepalive; a row of an unknown relation, which
        the general path reports). It also stops when a buffer reaches ``max_rows``: the
        batches then cut are returned (and no message). The caller looks at the clock
        between calls: one takes at most what libpq has read from the socket."""
        txn = self.txn
        if txn is None or self.ignoring or not self._rows_direct:
            size, data = read(1)
            return _NO_BATCHES, size, data, None
        buffers, gen, max_rows, seq = self.buffers, self.gen, self.max_rows, self.seq
        last = None
        try:
            while True:
                size, data = read(1)
                if size <= _XLOG_ROW_MIN or data[0] != 0x77:  # 'w': XLogData
                    return _NO_BATCHES, size, data, last
                kind = data[_XLOG_HEADER]
                if kind == 0x49 or kind == 0x44:  # I, D
                    step = 1
                elif kind == 0x55:  # U: one with an old image owns two positions (_update)
                    step = 1 if data[_XLOG_HEADER + 5] == 0x4E else 2
                else:
                    return _NO_BATCHES, size, data, last
                oid = _U32_AT(data, _XLOG_HEADER + 1)[0]
                buffer = buffers.get(oid)
                if buffer is None or buffer.run_gen != gen:
                    if oid not in self.relations:
                        return _NO_BATCHES, size, data, last  # the general path says why
                    if buffer is None:
                        buffer = self._buffer(oid)
                    buffer.open_run(gen, self.prefix, self.commit_us, txn.xid)
                raw = buffer.raw
                raw.append(data[_XLOG_HEADER:].tobytes())
                buffer.raw_seq.append(seq)
                seq += step
                last = data
                if buffer.sealed + len(buffer.ops) + len(raw) >= max_rows:
                    self.seq = seq
                    return self.flush(), 0, None, last
        finally:
            self.seq = seq

    def flush(self, idle: bool = False) -> list[ChangeBatch]:
        """Emit every pending row: committed transactions' rows first, the last of those
        batches carrying a new resume (an empty batch carries it when there are none and
        ``idle``, or when the open transaction's rows follow), then the open transaction's."""
        done: list[ChangeBatch] = []  # rows of committed transactions
        open_: list[ChangeBatch] = []  # rows of the open transaction
        for oid, buffer in self.buffers.items():
            if not buffer:
                continue
            batch, mark = buffer.to_batch({"relation": oid})
            rows = batch.num_rows
            mark = rows if self.txn is None else min(mark, rows)
            if mark == rows:
                done.append(batch)
            elif mark == 0:
                open_.append(batch)
            else:
                done.append(_rows(batch, 0, mark))
                open_.append(_rows(batch, mark, rows))
        self.buffers = {oid: b for oid, b in self.buffers.items() if not b}
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
        if old == msg:
            return []  # resent after a cache invalidation: same schema, keep the buffer
        self._same_key(msg)
        self.relations[msg.oid] = msg
        buffer = self.buffers.pop(msg.oid, None)
        if not buffer:
            return []
        batch, mark = buffer.to_batch({"relation": msg.oid})
        if self.txn is not None and mark < batch.num_rows:
            self.open_emitted = True  # no resume may follow until this transaction commits
        return [batch]

    def _same_key(self, msg: po.Relation) -> None:
        """Stop the stream where a table's replica identity no longer carries the key the
        target is written by: its primary key changed at the source after the key was read
        (:attr:`keys_at`). The old-key images from there on hold other columns, so an update
        that moves a row would leave its old row and a delete would miss it, silently. Before
        ``keys_at`` (a restart decoding older WAL) the identity may differ: what it sent was
        the key then. An identity that names no column (only inserts are published) and
        REPLICA IDENTITY FULL carry every column a key needs."""
        key = self.keys.get(msg.qualified)
        at = self.keys_at
        if not key or at is None or self.txn is None or self.txn.final_lsn <= at:
            return
        named = [c.name for c in msg.columns if c.is_key]
        if named and not set(key) <= set(named):
            raise FatalError(
                f"the key of {msg.qualified} changed at the source, from ({', '.join(key)}) to "
                f"({', '.join(named)}), in the transaction at {self.prefix.rstrip('.')}; its "
                "target table, conflict state and fences are keyed by the old one",
                hint=f"give the target table the new key ({', '.join(named)}), restart, then "
                f"run syncengine resnapshot -p <pipeline> --table {msg.qualified}",
            )

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

    def _buffer(self, oid: int) -> RowBuffer:
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
            buffer = self.buffers[oid] = RowBuffer(relation, types, key)
        return buffer

    def _update(self, msg: po.Update) -> None:
        old, new = msg.old, msg.new
        if old is None:
            self._row(msg.relation, OP_UPDATE, new)
            return
        # an update with an old image owns two positions, whether or not its key moved: the
        # stream's raw rows are numbered before they are decoded (:meth:`feed_payload`)
        if _key_moved(self._buffer(msg.relation), new, old):
            self._row(msg.relation, OP_DELETE, None, old)
            if msg.old_kind == "O":  # the whole old row: an unsent value is the old one
                new = tuple(o if n is po.UNCHANGED else n for n, o in zip(new, old, strict=True))
        elif self.txn is not None:
            self.seq += 1
        self._row(msg.relation, OP_UPDATE, new, old)

    def _tombstones(self, content: bytes) -> None:
        """Echo deletes of the keys a tombstone note names (:mod:`syncengine.tombstones`)."""
        table, keys = tombstones.decode(content)
        for oid, relation in self.relations.items():
            if relation.qualified != table:
                continue
            names = [c.name for c in relation.columns]
            for key in keys:
                old = tombstones.key_tuple(names, key)
                if old is not None:
                    self._row(oid, OP_DELETE, None, old)
            return

    def _row(self, oid: int, op: str, new: po.Tuple | None, old: po.Tuple | None = None) -> None:
        txn = self.txn
        if txn is None:
            raise DecodeError("row change outside a transaction", offset=0)
        pos = f"{self.prefix}{self.seq:08X}"
        self.seq += 1
        self._buffer(oid).add(op, pos, self.commit_us, txn.xid, new, old)


def _key_moved(buffer: RowBuffer, new: po.Tuple, old: po.Tuple) -> bool:
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
