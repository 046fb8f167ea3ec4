"""ParquetTarget: the change log as Parquet files, a landing zone for data lakes and audits.

Layout: ``<path>/<table>/date=YYYY-MM-DD/<first_pos>-<last_pos>.parquet`` (Hive-style date of
the commit time; rows without one go to ``date=__HIVE_DEFAULT_PARTITION__``). Each file holds
the compacted changes of one batch: ``_op``, ``_pos``, ``_ts``, ``_txid``, the row image and the
``_unsent.*`` / ``_before.*`` columns, exactly as the batch carried them.

Files are written atomically (temp file, fsync, rename, fsync of the directory) and the
checkpoint and shadow rows go to the SQLite store afterwards. Names are a function of the
positions, so replaying a batch overwrites its file; a replay cut into different batches
removes the files it supersedes (those of the table starting after the replayed batch's first
position), so the log never holds a change twice. Rows sharing one position (a snapshot chunk)
get a fingerprint of their keys in the name, so chunks at the same position do not collide.

``read_rows`` returns no rows: a log has no "current row" to compare, so conflict detection
sees every key as unwritten-by-others.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from syncengine import keyless
from syncengine.changes import OP_DELETE, OP_TRUNCATE, ChangeBatch
from syncengine.codecs import pg_text
from syncengine.errors import FatalError
from syncengine.state.protocols import TargetState
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.parquet.config import ParquetTargetConfig
from syncengine.targets.shadow import commit_to_sqlite, get_sqlite_checkpoint, read_sqlite_shadow

NULL_DATE = "__HIVE_DEFAULT_PARTITION__"
_META_FIRST = b"syncengine.first_pos"
_META_LAST = b"syncengine.last_pos"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


def _name_part(position: str) -> str:
    """A position as a file-name part: readable when short and safe, else prefix + hash."""
    safe = _UNSAFE.sub("_", position)
    if safe == position and len(safe) <= 100:
        return safe
    return f"{safe[:60]}~{hashlib.sha256(position.encode()).hexdigest()[:16]}"


def _fingerprint(keys: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, keys.schema) as writer:
        writer.write_table(keys)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:12]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as sink:
        pq.write_table(table, sink, compression="zstd")
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def table_folder(root: Path, table: str) -> Path:
    """The folder of a table's log: its name, with ``%``, path separators and NUL
    percent-encoded and ``.``/``..`` spelled out, so any table name stays one folder under
    ``root`` (a source table may be called ``a/b`` or ``..``)."""
    folder = table.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    folder = folder.replace("\0", "%00")
    if folder in (".", ".."):
        folder = folder.replace(".", "%2E")
    return root / folder


def log_files(root: Path, table: str) -> list[Path]:
    return sorted(table_folder(root, table).glob("date=*/*.parquet"))


def read_log(root: str | Path, table: str) -> pa.Table:
    """Every change of ``table`` in the log, in position order (file order breaks ties, after
    a truncate: a keyless snapshot's truncate shares its position with the rows it precedes)."""
    files = log_files(Path(root), table)
    if not files:
        return pa.table({})
    parts = pg_text.unify_text([pq.read_table(f, partitioning=None) for f in files])
    log = pa.concat_tables(parts, promote_options="permissive")
    order = pa.table(
        {
            "pos": log.column("_pos"),
            "rows": pc.not_equal(log.column("_op"), OP_TRUNCATE),
            "seq": pa.array(range(log.num_rows), pa.int64()),
        }
    )
    keys = [("pos", "ascending"), ("rows", "ascending"), ("seq", "ascending")]
    indices = pc.sort_indices(order, sort_keys=keys)
    return log.take(indices)


def replay_log(log: pa.Table, spec: TableSpec) -> pa.Table:
    """The table state the log describes: the changes applied in order (via compaction), deletes
    and truncates taken out. A value that was never sent since the last insert is null."""
    columns = [f.name for f in spec.schema]
    if not log.num_rows:
        return spec.schema.empty_table()
    if spec.key:
        batch = ChangeBatch(spec.name, log, spec.key).compact()
        frame = batch.to_polars().filter(~pl.col("_op").is_in([OP_DELETE, OP_TRUNCATE]))
    else:  # a keyless log from its start: the rows it adds are the table
        names = [c for c in columns if c in log.column_names]
        frame = keyless.delta(ChangeBatch(spec.name, log, ()), names).appends
    for name in columns:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(name))
    selected = frame.select(columns)
    rows = (selected.sort(list(spec.key)) if spec.key else selected).to_arrow()
    return rows.cast(spec.schema) if rows.schema != spec.schema else rows


def with_source_types(data: pa.Table, spec: TableSpec) -> pa.Table:
    """The spec's field metadata (``pg_type``, ``bson_type``) on the data's fields, so each
    file records the source type of a column, also where a batch carried it as Postgres text
    (a value its Arrow type cannot hold, see :mod:`syncengine.codecs.pg_text`)."""
    declared = {f.name: f.metadata for f in spec.schema if f.metadata}
    if not declared:
        return data
    fields = [
        f.with_metadata({**(f.metadata or {}), **declared[f.name]}) if f.name in declared else f
        for f in data.schema
    ]
    return data.cast(pa.schema(fields, metadata=data.schema.metadata))


class ParquetTarget:
    """See the module docstring. State (checkpoint, shadow) lives in the SQLite store."""

    keeps_state = False
    #: every change is recorded as it comes; there is no current row to conflict with
    change_log = True

    def __init__(self, pipeline: str, config: ParquetTargetConfig, state: TargetState) -> None:
        self.pipeline = pipeline
        self.root = Path(config.path)
        self.state = state
        #: file → (first, last) position, read from the footer once
        self._ranges: dict[Path, tuple[str, str]] = {}

    async def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FatalError(f"parquet target: cannot create {self.root}: {exc.strerror}") from None

    async def close(self) -> None:
        self._ranges.clear()

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        """A log grows columns freely: each file carries its own schema."""
        table_folder(self.root, spec.name).mkdir(parents=True, exist_ok=True)
        return spec

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        return spec.schema.empty_table()

    async def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        """The state the log describes (see :func:`replay_log`), for ``verify``."""
        yield replay_log(read_log(self.root, spec.name), spec)

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        return read_sqlite_shadow(self.state, self.pipeline, table, row_keys)

    async def get_checkpoint(self, stream: str) -> str | None:
        return get_sqlite_checkpoint(self.state, self.pipeline, stream)

    async def reset_checkpoint(self, stream: str) -> None:
        """Checkpoints live in the SQLite store, which the caller resets."""

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        result = ApplyResult()
        truncated: set[str] = set()
        for write in writes:
            data = write.batch.data
            if not data.num_rows:
                continue
            ops = data.column("_op")
            n_trunc = pc.sum(pc.equal(ops, OP_TRUNCATE)).as_py() or 0
            n_del = pc.sum(pc.equal(ops, OP_DELETE)).as_py() or 0
            if n_trunc:
                truncated.add(write.spec.name)
            self._write_log(write.spec, with_source_types(data, write.spec))
            result.truncated += int(n_trunc > 0)
            result.deleted += n_del
            result.upserted += data.num_rows - n_del - n_trunc
        fault_point("parquet.after_data")
        commit_to_sqlite(self.state, self.pipeline, writes, truncated, checkpoint)
        return result

    def _write_log(self, spec: TableSpec, data: pa.Table) -> None:
        table = spec.name
        first = pc.min(data.column("_pos")).as_py()
        dates = pc.fill_null(pc.strftime(data.column("_ts"), format="%Y-%m-%d"), NULL_DATE)
        written: set[Path] = set()
        for date in pc.unique(dates).to_pylist():
            part = data.filter(pc.equal(dates, date))
            lo, hi = pc.min(part.column("_pos")).as_py(), pc.max(part.column("_pos")).as_py()
            folder = table_folder(self.root, table) / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{_name_part(lo)}-{_name_part(hi)}"
            if lo == hi and spec.key:
                # One position for many rows (a snapshot chunk): the keys tell chunks apart.
                name += (
                    f"-{_fingerprint(part.select([k for k in spec.key if k in part.column_names]))}"
                )
            elif lo == hi:
                # A keyless chunk: two chunks may hold the same rows, so a fresh name; a
                # restarted keyless snapshot logs its truncate again (docs/postgres-source.md)
                name += f"-{uuid.uuid4().hex[:12]}"
            path = folder / f"{name}.parquet"
            meta = {
                **(part.schema.metadata or {}),
                _META_FIRST: lo.encode(),
                _META_LAST: hi.encode(),
            }
            write_atomically(part.replace_schema_metadata(meta), path)
            self._ranges[path] = (lo, hi)
            written.add(path)
        # Files of an earlier attempt that started at or after this batch are superseded.
        for path in log_files(self.root, table):
            if path in written:
                continue
            old_first, old_last = self._range_of(path)
            # Equal first positions: a re-cut replay, unless both are single-position chunks.
            if old_first > first or (old_first == first and old_last != old_first):
                path.unlink(missing_ok=True)
                self._ranges.pop(path, None)

    def _range_of(self, path: Path) -> tuple[str, str]:
        found = self._ranges.get(path)
        if found is None:
            meta = pq.read_metadata(path).metadata or {}
            found = (meta.get(_META_FIRST, b"").decode(), meta.get(_META_LAST, b"").decode())
            self._ranges[path] = found
        return found
