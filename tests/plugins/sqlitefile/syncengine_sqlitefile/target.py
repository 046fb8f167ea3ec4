"""The ``sqlitefile`` target: every target table's rows, the shadow and the checkpoints in one
SQLite file, written in one transaction per ``apply`` (exactly-once effect, like the Postgres
target: ``keeps_state``).

Storage (three fixed tables, so no identifier is ever built from a name):

* ``rows(tbl, row_key, row)``: one row per key; ``row_key`` is the engine's canonical key text
  (:func:`syncengine.conflicts.rows.row_keys`, the shadow's key too) and ``row`` the row as a
  one-row Arrow IPC stream, so every Arrow type (decimals, timestamps, lists, metadata) comes
  back exactly as it was written. Encoding a row is a Python step per row, as every sqlite3
  write is: this is an example plugin, not a fast path.
* ``shadow(tbl, row_key, row_hash, base, position)``: what conflict detection remembers.
* ``checkpoints(stream, position)``.

Replay-safe: a row is replaced by key, a delete of a missing key does nothing, so applying a
batch twice leaves the same file. The SQLite calls block the event loop briefly; a production
kind would run them in a thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import OP_DELETE, OP_TRUNCATE, UNSENT_PREFIX
from syncengine.conflicts.rows import row_keys
from syncengine.errors import FatalError
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.shadow import shadow_table, stored_upserts
from syncengine_sqlitefile.config import SQLiteFileTargetConfig

DDL = (
    "CREATE TABLE IF NOT EXISTS rows (tbl TEXT NOT NULL, row_key TEXT NOT NULL, "
    "row BLOB NOT NULL, PRIMARY KEY (tbl, row_key))",
    "CREATE TABLE IF NOT EXISTS shadow (tbl TEXT NOT NULL, row_key TEXT NOT NULL, "
    "row_hash TEXT NOT NULL, base TEXT, position TEXT, PRIMARY KEY (tbl, row_key))",
    "CREATE TABLE IF NOT EXISTS checkpoints (stream TEXT PRIMARY KEY, position TEXT NOT NULL)",
)
SCAN_ROWS = 10_000
"""Rows per table ``scan`` yields at a time."""


def encode(rows: pa.Table) -> list[bytes]:
    """Each row as a one-row Arrow IPC stream."""
    out = []
    for i in range(rows.num_rows):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows.slice(i, 1))
        out.append(sink.getvalue().to_pybytes())
    return out


def decode(blobs: Sequence[bytes], spec: TableSpec) -> pa.Table:
    """Stored rows with the columns and types of ``spec`` (a column added since a row was
    written is null in it)."""
    if not blobs:
        return spec.schema.empty_table()
    parts = [pa.ipc.open_stream(blob).read_all() for blob in blobs]
    table = pa.concat_tables(parts, promote_options="permissive")
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in spec.schema
    ]  # fmt: skip
    return pa.table(columns, schema=spec.schema)


def keys_of(rows: pa.Table, key: Sequence[str]) -> list[str]:
    return row_keys(pl.from_arrow(rows.select(list(key))), key).to_list()  # type: ignore[arg-type]


class SQLiteFileTarget:
    """A :class:`~syncengine.targets.base.Target`; see the module docstring."""

    keeps_state = True  # checkpoint and shadow commit with the rows
    change_log = False

    def __init__(self, pipeline: str, config: SQLiteFileTargetConfig) -> None:
        self.pipeline = pipeline
        self.path = Path(config.path)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for statement in DDL:
                db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise FatalError(f"sqlitefile target: cannot open {self.path}: {exc}") from None
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("sqlitefile target used before open()")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Rows carry their own schema, so a table needs no DDL and grows freely."""
        if not spec.key:
            raise FatalError(
                f"sqlitefile target: table {spec.name} has no key; give the source table a "
                "primary key or the mapping a key:"
            )
        return spec

    def _stored(self, table: str, keys: Sequence[str]) -> dict[str, bytes]:
        found = self.db.execute(
            "SELECT row_key, row FROM rows WHERE tbl = ? AND row_key IN "
            "(SELECT value FROM json_each(?))",
            (table, json.dumps(list(keys))),
        )
        return dict(found.fetchall())

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        stored = self._stored(spec.name, keys_of(keys, spec.key))
        return decode(list(stored.values()), spec)

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        found = self.db.execute(
            "SELECT row_key, row_hash, base, position FROM shadow WHERE tbl = ? AND row_key IN "
            "(SELECT value FROM json_each(?))",
            (table, json.dumps(list(row_keys))),
        )
        return shadow_table(found.fetchall())

    async def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        cursor = self.db.execute(
            "SELECT row FROM rows WHERE tbl = ? ORDER BY row_key", (spec.name,)
        )
        while blobs := [blob for (blob,) in cursor.fetchmany(SCAN_ROWS)]:
            yield decode(blobs, spec)

    async def get_checkpoint(self, stream: str) -> str | None:
        found = self.db.execute("SELECT position FROM checkpoints WHERE stream = ?", (stream,))
        row = found.fetchone()
        return row[0] if row else None

    async def reset_checkpoint(self, stream: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM checkpoints WHERE stream = ?", (stream,))

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        result = ApplyResult()
        with self._transaction() as db:
            truncated = {w.spec.name for w in writes if self._write_rows(db, w, result)}
            fault_point("sqlitefile.after_data")
            for write in writes:
                self._write_shadow(db, write, write.spec.name in truncated)
            if checkpoint is not None:
                db.execute(
                    "INSERT INTO checkpoints (stream, position) VALUES (?, ?) "
                    "ON CONFLICT (stream) DO UPDATE SET position = excluded.position",
                    (checkpoint.stream, checkpoint.position),
                )
        return result

    def _write_rows(self, db: sqlite3.Connection, write: TableWrite, result: ApplyResult) -> bool:
        """Apply one table's changes; True when they began with a truncate."""
        if not write.batch.data.num_rows:
            return False
        batch = write.batch.compact()  # one change per key; a truncate comes first
        data, table = batch.data, write.spec.name
        ops = data.column("_op")
        truncate = bool(pc.any(pc.equal(ops, OP_TRUNCATE)).as_py())
        if truncate:
            db.execute("DELETE FROM rows WHERE tbl = ?", (table,))
            result.truncated += 1
        data = data.filter(pc.not_equal(ops, OP_TRUNCATE))
        deleted = pc.equal(data.column("_op"), OP_DELETE)
        gone = keys_of(data.filter(deleted), write.spec.key)
        db.executemany("DELETE FROM rows WHERE tbl = ? AND row_key = ?", [(table, k) for k in gone])
        result.deleted += len(gone)
        upserts = data.filter(pc.invert(deleted))
        keys = keys_of(upserts, write.spec.key)
        rows = self._with_unsent_kept(upserts, keys, write.spec)
        db.executemany(
            "INSERT INTO rows (tbl, row_key, row) VALUES (?, ?, ?) "
            "ON CONFLICT (tbl, row_key) DO UPDATE SET row = excluded.row",
            [(table, k, blob) for k, blob in zip(keys, encode(rows), strict=True)],
        )
        result.upserted += rows.num_rows
        return truncate

    def _with_unsent_kept(self, upserts: pa.Table, keys: list[str], spec: TableSpec) -> pa.Table:
        """The rows to store: the spec's columns, where a column the source did not send
        (unchanged TOAST) keeps the stored row's value."""
        names = [f.name for f in spec.schema if f.name in upserts.column_names]
        rows = upserts.select(names)
        unsent = [n for n in names if UNSENT_PREFIX + n in upserts.column_names]
        if not unsent or not rows.num_rows:
            return rows
        stored = self._stored(spec.name, keys)
        old = decode(list(stored.values()), spec)
        where = pc.index_in(pa.array(keys, pa.string()), value_set=pa.array(list(stored)))
        for name in unsent:
            previous = old.column(name).take(where).cast(rows.schema.field(name).type)
            mask = pc.fill_null(upserts.column(UNSENT_PREFIX + name), False)
            kept = pc.if_else(mask, previous, rows.column(name))  # no stored row: null
            rows = rows.set_column(rows.column_names.index(name), name, kept)
        return rows

    def _write_shadow(self, db: sqlite3.Connection, write: TableWrite, truncated: bool) -> None:
        table = write.spec.name
        if truncated:  # a truncated table's shadow goes with its rows
            db.execute("DELETE FROM shadow WHERE tbl = ?", (table,))
        upserts = stored_upserts(write)
        db.executemany(
            "INSERT INTO shadow (tbl, row_key, row_hash, base, position) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (tbl, row_key) DO UPDATE SET row_hash = excluded.row_hash, "
            "base = excluded.base, position = excluded.position",
            [(table, *r) for r in zip(*(c.to_pylist() for c in upserts.columns), strict=True)],
        )
        db.executemany(
            "DELETE FROM shadow WHERE tbl = ? AND row_key = ?",
            [(table, k) for k in write.shadow.deletes],
        )
