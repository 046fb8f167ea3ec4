"""Watermark windows over the slot's stream, and the positions of reconciled snapshot rows.

The rows of a chunk read while the source is written to carry the position up to which they
contain every change of their key; the target's position fence then drops the stream's replay
of those changes (it would move the row back in time) and applies the later ones.

* :class:`VisibilityHorizon` settles, after a low watermark, a position L below which every
  committed transaction is visible to the reads that follow (see its docstring for why WAL
  order is not visibility order).
* :class:`WatermarkReader` reads the replication stream from where the WAL is when the
  reconciliation starts (acknowledging nothing, so the later stream still replays everything
  from the snapshot position) and records, between a low and a high watermark message, every
  key changed, with the commit LSN and xid of each of its transactions.
  It also keeps every delete it decodes (:class:`.deletes.DeleteLog`), for the snapshot to
  send as tombstones (ghost rows, see :mod:`.deletes`).
* :func:`row_positions` raises a key's position above L by the window's transactions its read
  saw (:class:`ReadSnapshot`). No row is dropped: DBLog drops the rows of keys changed in the
  window and lets the stream bring their state, but pgoutput does not resend an unchanged
  TOASTed value, so a key the target did not have yet would come back without it.

Keys are compared in Postgres text form on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import lsn_to_pos, pos_to_lsn
from syncengine.sources.postgres import admin
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.chunks import TableShape
from syncengine.sources.postgres.deletes import DeleteLog
from syncengine.sources.postgres.replication import ReplicationStream
from syncengine.sources.postgres.streaming import start_replication
from syncengine.sources.postgres.wire import parse_lsn

if TYPE_CHECKING:
    from syncengine.sources.postgres.context import SourceContext

log = logging.getLogger("syncengine.sources.postgres")

#: stands for "every key" when the table was truncated inside a window
ALL_KEYS = ("*truncate*",)
#: how long a chunk read waits for transactions still committing when it starts (seconds)
SETTLE_SECONDS = 5.0
#: past every row number of a transaction in a stream ``_pos`` (``<commit>.<8 hex>``)
_WHOLE_TRANSACTION = ".FFFFFFFF"

#: per table, per key (text values), the (commit LSN, xid) of each transaction that changed it
Window = dict[str, dict[tuple[str | None, ...], list[tuple[int, int]]]]


class VisibilityHorizon:
    """Positions below which every committed transaction is visible to a new snapshot.

    Postgres writes a transaction's commit record to the WAL (where the slot's stream sees it)
    *before* it removes the transaction from the ProcArray, which is what snapshots consult: for
    a moment, or as long as a commit waits for a synchronous standby, a transaction is committed
    in the stream yet invisible to a snapshot taken now. The commit log is updated in between,
    so ``pg_xact_status()`` can say "committed" too early. Chunk rows carry a position P, and
    the target's position fence drops replayed changes at or before P as already contained in
    them, so P must never be above a commit the read missed. :meth:`settle` finds one:

    1. ``L = pg_current_wal_insert_lsn()``: a commit record starting below L was already
       reserved, so its transaction had an xid by then.
    2. A throwaway xid (``pg_current_xact_id()``, own transaction): it is assigned after every
       xid of step 1, and once it completed every later snapshot's ``xmax`` is above them all
       (``pg_current_snapshot()`` leaves out running xids at or above ``xmax``).
    3. The running xids of ``pg_current_snapshot()``: besides these, every transaction with a
       commit below L has left the ProcArray and is visible to any later snapshot.
    4. Wait until none of them is running in a fresh snapshot (``pg_visible_in_snapshot``).

    A read whose snapshot is taken after that sees every transaction whose commit record starts
    below L, i.e. every stream change whose ``_pos`` sorts at or below ``lsn_to_pos(L)``.

    A transaction still running after ``settle_seconds`` (a long writer, or a commit waiting
    for a synchronous standby) cannot be told apart from one whose commit is already in the
    WAL: the read gets the best earlier position instead — ``floor`` (the snapshot position:
    the stream replays nothing at or below it) or the last settled L (a transaction visible
    then stays visible) — with a warning, and that xid is not waited for again.
    """

    def __init__(self, floor: str, settle_seconds: float | None = None) -> None:
        self.best = pos_to_lsn(floor)
        self.settle_seconds = SETTLE_SECONDS if settle_seconds is None else settle_seconds
        #: xids that outlasted a wait (not waited for again)
        self.stuck: set[str] = set()

    async def settle(self, conn: psycopg.AsyncConnection) -> tuple[str, bool]:
        """The position for rows read by snapshots taken after this returns, and whether it
        is this call's L (True) or an earlier one (a transaction outlasted the wait)."""
        row = await (await conn.execute("SELECT pg_current_wal_insert_lsn()::text")).fetchone()
        assert row is not None
        lsn = parse_lsn(row[0])
        await conn.execute("SELECT pg_current_xact_id()")
        running = await _running(conn, None)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settle_seconds
        pause = 0.002
        while running and not running & self.stuck:
            if loop.time() >= give_up:
                log.warning(
                    "transactions %s still running after %.0f s: snapshot rows read now carry "
                    "position %s, so replayed older changes may briefly overwrite them",
                    ", ".join(sorted(running, key=int)),
                    self.settle_seconds,
                    lsn_to_pos(self.best),
                )
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
            running = await _running(conn, running)
        if running:
            self.stuck |= running
            return lsn_to_pos(self.best), False
        self.best = max(self.best, lsn)
        return lsn_to_pos(lsn), True


async def _running(conn: psycopg.AsyncConnection, among: set[str] | None) -> set[str]:
    """Top-level xids running in a new snapshot (of ``among``, or all of them)."""
    if among is None:
        cur = await conn.execute("SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) x")
    else:
        cur = await conn.execute(
            "SELECT x FROM unnest(%s::text[]) x "
            "WHERE NOT pg_visible_in_snapshot(x::xid8, pg_current_snapshot())",
            (sorted(among),),
        )
    return {r[0] for r in await cur.fetchall()}


@dataclass(frozen=True)
class ReadSnapshot:
    """The snapshot of one chunk read (``pg_current_snapshot()`` in its transaction)."""

    xmin: int
    xmax: int
    running: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> ReadSnapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, xid: int) -> bool:
        """Whether the read contains the committed transaction ``xid`` (32 bits, as pgoutput
        sends it; widened next to ``xmax``)."""
        diff = (xid - self.xmax) % (1 << 32)
        full = self.xmax + diff if diff < 1 << 31 else self.xmax + diff - (1 << 32)
        return full < self.xmin or (full < self.xmax and full not in self.running)


def row_positions(
    text: pa.Table,
    shape: TableShape,
    changed: dict[tuple[str | None, ...], list[tuple[int, int]]],
    horizon: str,
    read: ReadSnapshot | None,
) -> pa.Array:
    """The position of each row of a chunk read after settling ``horizon``: the last one up to
    which the read contains every change of the row's key, so the fence may drop the replay of
    those changes. That is ``horizon``, raised for a key changed inside the window by the
    transactions (commit order) that the read saw, up to the first it did not see. Every change
    of the key between ``horizon`` and the high watermark is in ``changed``; changes to one row
    are visible in commit order (each waits for the previous one's row lock, which is released
    after the transaction leaves the ProcArray), so the first unseen one ends the prefix.
    Without ``read`` (the horizon did not settle) every row gets ``horizon``."""
    n = text.num_rows
    plain = pa.array([horizon] * n, pa.string())
    if read is None or not shape.key or not changed:
        return plain
    start = pos_to_lsn(horizon)
    raised: dict[tuple[str | None, ...], str] = {}
    for key, txns in changed.items():
        for lsn, xid in txns:
            if lsn < start:  # settled: seen, and fenced by the horizon already
                continue
            if not read.sees(xid):
                break
            raised[key] = lsn_to_pos(lsn) + _WHOLE_TRANSACTION
    if not raised:
        return plain
    keys = pa.table(
        {k: pa.array([key[i] for key in raised], pa.string()) for i, k in enumerate(shape.key)}
    ).append_column("__pos", pa.array(list(raised.values()), pa.string()))
    rows = text.select(list(shape.key)).append_column("__row", pa.array(range(n), pa.int64()))
    joined = rows.join(keys, keys=list(shape.key), join_type="left outer")
    ordered = joined.sort_by("__row").column("__pos")
    return pc.fill_null(ordered, horizon).combine_chunks()


class WatermarkReader:
    """``temporary``: read through a temporary slot of that name created by :meth:`open`
    (from its consistent point, ``start`` unused) instead of the pipeline's slot, which a
    running stream holds (a table snapshot interleaved with the stream, :mod:`.tablesnap`)."""

    def __init__(self, source: SourceContext, start: int, temporary: str | None = None) -> None:
        self.source = source
        self.start = start
        self.temporary = temporary
        self.repl: psycopg.AsyncConnection | None = None
        self.relations: dict[int, tuple[str, tuple[int, ...] | None]] = {}
        self.open_windows: dict[str, Window] = {}
        self.closed: dict[str, Window] = {}
        #: (commit LSN, xid) of the transaction being decoded
        self.txn: tuple[int, int] = (0, 0)
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        #: every delete since ``start``, for the snapshot to send (see :mod:`.deletes`)
        self.deletes = DeleteLog(source)

    async def open(self) -> None:
        self.repl = await self.source.connect(replication=True)
        slot = self.source.slot
        if self.temporary is not None:
            slot = self.temporary
            self.start, _ = await admin.create_slot(self.repl, slot, export=False, temporary=True)
        paced = await start_replication(self.repl, slot, self.source.publication, self.start)
        stream = ReplicationStream(self.repl, self.start)
        stream.pace(paced)
        # Confirm nothing: the snapshot position may be past the pipeline's checkpoint (a
        # re-backfill), and a flush report would let the server drop changes the pipeline
        # has not applied yet. Postgres ignores a flush position of 0.
        stream.flushed = 0
        stream.send_status()
        self.task = asyncio.create_task(self._run(stream))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.repl is not None:
            await self.repl.close()

    async def _run(self, stream: ReplicationStream) -> None:
        try:
            while True:
                message = await stream.read(5.0)
                if stream.status_due():
                    stream.send_status(reply=True)  # the answer proves the connection is alive
                stream.check_alive()  # silent (half-open): fail changed_keys(), do not wait
                if isinstance(message, bytes):
                    await self._handle(po.decode(message))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - surfaced to changed_keys()
            self.failure = exc
            async with self.changed:
                self.changed.notify_all()
        finally:
            stream.stop_watching()

    async def _handle(self, msg: po.PgOutputMessage) -> None:
        self.deletes.feed(msg)
        if isinstance(msg, po.Relation):
            key = self.source.keys.get(msg.qualified) or ()
            names = [c.name for c in msg.columns]
            indices = tuple(names.index(k) for k in key) if all(k in names for k in key) else None
            self.relations[msg.oid] = (msg.qualified, indices if key else None)
        elif isinstance(msg, po.Begin):
            self.txn = (msg.final_lsn, msg.xid)
        elif isinstance(msg, po.Message) and msg.prefix == admin.WATERMARK_PREFIX:
            kind, _, marker = msg.content.decode().partition(":")
            if kind == "low":
                self.open_windows[marker] = {}
            elif kind == "high" and marker in self.open_windows:
                self.closed[marker] = self.open_windows.pop(marker)
                async with self.changed:
                    self.changed.notify_all()
        elif self.open_windows:
            for table, values in self._keys_of(msg):
                for window in self.open_windows.values():
                    seen = window.setdefault(table, {}).setdefault(values, [])
                    if not seen or seen[-1] != self.txn:
                        seen.append(self.txn)

    def _keys_of(self, msg: po.PgOutputMessage) -> list[tuple[str, tuple[str | None, ...]]]:
        if isinstance(msg, po.Truncate):
            return [(self.relations[o][0], ALL_KEYS) for o in msg.relations if o in self.relations]
        images: list[po.Tuple | None] = []
        if isinstance(msg, po.Insert):
            oid, images = msg.relation, [msg.new]
        elif isinstance(msg, po.Update):
            oid, images = msg.relation, [msg.new, msg.old]
        elif isinstance(msg, po.Delete):
            oid, images = msg.relation, [msg.old]
        else:
            return []
        table, indices = self.relations.get(oid, ("", None))
        if indices is None:
            return [(table, ALL_KEYS)] if table else []
        out = []
        for image in images:
            if image is not None:
                values = tuple(_text(image[i]) for i in indices)
                out.append((table, values))
        return out

    async def changed_keys(self, marker: str) -> Window:
        """Keys changed inside the window, by table, each with the (commit LSN, xid) of its
        transactions in commit order; waits for the window's high mark."""
        async with self.changed:
            await self.changed.wait_for(lambda: marker in self.closed or self.failure is not None)
        if self.failure is not None:
            raise self.failure
        return self.closed.pop(marker)


def _text(value: po.Value) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None
