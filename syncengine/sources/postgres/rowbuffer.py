"""The pending rows of one relation (one schema) until its batch is cut.

Rows arrive two ways and are kept in arrival order as a list of *pieces*:

* the stream's row messages (:meth:`RowBuffer.add_raw`): the payload bytes as they came, with
  their position number; decoded all together when the run ends (:mod:`.rowdecode`);
* decoded message objects (:meth:`RowBuffer.add`: a truncate, or an assembler fed message
  objects): their text values, column by column.

A run of one kind is sealed into a piece of Arrow binary columns when the other kind arrives
or the batch is cut; every column is converted to its Arrow type once, over the whole batch
(:func:`.columns.to_arrow`), so a batch has one type per column whatever its pieces.

Lengths and the open-transaction *mark* count entries: rows sealed or of the open object run,
plus raw messages not yet decoded. Decoding turns an update that moved its key into two rows;
the mark is translated then, so it still points at the first row of the open transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from syncengine.changes import BEFORE_PREFIX, META_SCHEMA, UNSENT_PREFIX, ChangeBatch
from syncengine.errors import DecodeError
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.columns import PgType, to_arrow
from syncengine.sources.postgres.rowdecode import decode_rows, positions


@dataclass
class _Piece:
    """Rows in Arrow form, values still as the server's text bytes."""

    values: list[pa.Array]
    #: per column (None: all null), or None when no row has an old image
    before: list[pa.Array | None] | None
    unsent: dict[int, np.ndarray]
    ops: pa.Array
    pos: pa.Array
    ts: pa.Array
    txid: pa.Array

    def __len__(self) -> int:
        return len(self.ops)


@dataclass
class RowBuffer:
    """Pending rows of one relation (see the module docstring)."""

    relation: po.Relation
    types: list[PgType]
    key: tuple[str, ...]
    pieces: list[_Piece] = field(default_factory=list)
    #: rows in ``pieces``
    sealed: int = 0
    #: entries the buffer held when the open transaction began
    mark: int = 0
    # the open run of message objects
    ops: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    ts: list[int | None] = field(default_factory=list)
    txid: list[int | None] = field(default_factory=list)
    values: list[list[bytes | None]] = field(default_factory=list)
    before: list[list[bytes | None]] | None = None
    #: column index -> rows of the object run whose value was not sent
    unsent: dict[int, list[int]] = field(default_factory=dict)
    # the open run of raw row messages: payloads, their first position number, and the
    # transactions they belong to as (first message, position prefix, commit time, xid)
    raw: list[bytes] = field(default_factory=list)
    raw_seq: list[int] = field(default_factory=list)
    runs: list[tuple[int, str, int, int]] = field(default_factory=list)
    #: the assembler's transaction number of the last run opened (-1: none open)
    run_gen: int = -1

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.relation.columns]
        names = [c.name for c in self.relation.columns]
        self.key_index = [names.index(k) for k in self.key if k in names]

    def __len__(self) -> int:
        return self.sealed + len(self.ops) + len(self.raw)

    def open_run(self, gen: int, prefix: str, commit_us: int, xid: int) -> None:
        """The next raw messages belong to transaction ``gen`` (called when it changes)."""
        if self.ops:
            self._seal_objects()
        self.runs.append((len(self.raw), prefix, commit_us, xid))
        self.run_gen = gen

    def add_raw(self, payload: bytes, seq: int) -> None:
        """One Insert, Update or Delete payload of the open run (see :meth:`open_run`)."""
        self.raw.append(payload)
        self.raw_seq.append(seq)

    def add(
        self,
        op: str,
        pos: str,
        ts: int | None,
        xid: int | None,
        new: po.Tuple | None,
        old: po.Tuple | None = None,
    ) -> None:
        """One decoded row; ``old``: its old image (a delete's key, or an update's)."""
        width = len(self.relation.columns)
        for image in (new, old):
            if image is not None and len(image) != width:
                raise DecodeError(
                    f"{self.relation.qualified}: tuple has {len(image)} columns, relation "
                    f"has {width}",
                    offset=0,
                )
        if self.raw:
            self._seal_raw()
        self.run_gen = -1
        row = len(self.ops)
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

    def to_batch(self, meta: dict[str, object]) -> tuple[ChangeBatch, int]:
        """Every row as one batch, and the row the open transaction's rows start at."""
        if self.raw:
            self._seal_raw()
        if self.ops:
            self._seal_objects()
        pieces = self.pieces
        names = [c.name for c in self.relation.columns]
        fields: list[pa.Field] = []
        arrays: list[pa.Array] = []
        for i, (name, type_) in enumerate(zip(names, self.types, strict=True)):
            arrays.append(to_arrow(_concat([p.values[i] for p in pieces]), type_, name))
            fields.append(type_.field(name, arrays[-1].type))
        fields.extend(META_SCHEMA)
        arrays.append(_concat([p.ops for p in pieces]))
        arrays.append(_concat([p.pos for p in pieces]))
        arrays.append(_concat([p.ts for p in pieces]).cast(pa.timestamp("us", tz="UTC")))
        arrays.append(_concat([p.txid for p in pieces]))
        if any(p.before is not None for p in pieces):
            for i, (name, type_) in enumerate(zip(names, self.types, strict=True)):
                parts = [p.before[i] if p.before is not None else None for p in pieces]
                if all(part is None for part in parts):  # a column no old image carries
                    arrays.append(pa.nulls(self.sealed, type_.arrow))
                else:
                    text = _concat(
                        [
                            pa.nulls(len(p), pa.binary()) if a is None else a
                            for p, a in zip(pieces, parts, strict=True)
                        ]
                    )
                    arrays.append(to_arrow(text, type_, name))
                fields.append(type_.field(BEFORE_PREFIX + name, arrays[-1].type))
        for i in sorted({i for p in pieces for i in p.unsent}):
            mask = np.concatenate([p.unsent.get(i, np.zeros(len(p), dtype=bool)) for p in pieces])
            fields.append(pa.field(UNSENT_PREFIX + names[i], pa.bool_()))
            arrays.append(pa.array(mask, pa.bool_()))
        data = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
        return ChangeBatch(self.relation.qualified, data, self.key, meta), self.mark

    def _seal_objects(self) -> None:
        n = len(self.ops)
        before: list[pa.Array | None] | None = None
        if self.before is not None:
            before = [pa.array(column, pa.binary()) for column in self.before]
        unsent = {}
        for i, rows in self.unsent.items():
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            unsent[i] = mask
        self.pieces.append(
            _Piece(
                [pa.array(column, pa.binary()) for column in self.values],
                before,
                unsent,
                pa.array(self.ops, pa.string()),
                pa.array(self.pos, pa.string()),
                pa.array(self.ts, pa.int64()),
                pa.array(self.txid, pa.int64()),
            )
        )
        self.sealed += n
        self.ops, self.pos, self.ts, self.txid = [], [], [], []
        self.values = [[] for _ in self.relation.columns]
        self.before, self.unsent = None, {}

    def _seal_raw(self) -> None:
        rows = decode_rows(self.raw, len(self.relation.columns), self.key_index)
        source = rows.source
        first_of_run = np.fromiter((r[0] for r in self.runs), dtype=np.int64, count=len(self.runs))
        run_of = np.searchsorted(first_of_run, source, side="right") - 1
        seq = np.asarray(self.raw_seq, dtype=np.int64)[source] + rows.second
        self.pieces.append(
            _Piece(
                rows.values,
                rows.before,
                rows.unsent,
                rows.ops,
                positions([r[1] for r in self.runs], run_of, seq),
                pa.array(np.array([r[2] for r in self.runs], dtype=np.int64)[run_of]),
                pa.array(np.array([r[3] for r in self.runs], dtype=np.int64)[run_of]),
            )
        )
        if self.mark > self.sealed:  # messages before it → rows before it
            self.mark = self.sealed + int(np.searchsorted(source, self.mark - self.sealed))
        self.sealed += len(source)
        self.raw, self.raw_seq, self.runs, self.run_gen = [], [], [], -1


def _concat(parts: list[pa.Array]) -> pa.Array:
    if len(parts) == 1:
        return parts[0]
    return pa.concat_arrays(parts)
