"""DBLog-style watermark windows over the slot's stream, for reconciling snapshot chunks.

A background task reads the replication stream from the snapshot position (acknowledging
nothing beyond it, so the later stream replays everything) and, between the low and high
watermark messages of a chunk, records which keys changed. The chunk's rows for those keys
are dropped: the replay brings their newer state, and the rest of the chunk is exactly the
state at the high watermark. Keys are compared in Postgres text form on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa

from syncengine.sources.postgres import admin
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.chunks import TableShape
from syncengine.sources.postgres.replication import ReplicationStream
from syncengine.sources.postgres.streaming import start_replication
from syncengine.sources.postgres.wire import XLogData

if TYPE_CHECKING:
    from syncengine.sources.postgres.source import PostgresSource

#: stands for "every key" when the table was truncated inside a window
ALL_KEYS = ("*truncate*",)


class WatermarkReader:
    def __init__(self, source: PostgresSource, start: int) -> None:
        self.source = source
        self.start = start
        self.repl: psycopg.AsyncConnection | None = None
        self.relations: dict[int, tuple[str, tuple[int, ...] | None]] = {}
        self.open_windows: dict[str, set[tuple[str, tuple]]] = {}
        self.closed: dict[str, set[tuple[str, tuple]]] = {}
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    async def open(self) -> None:
        self.repl = await self.source.connect(replication=True)
        await start_replication(self.repl, self.source.slot, self.source.publication, self.start)
        stream = ReplicationStream(self.repl, self.start)
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
                if isinstance(message, XLogData):
                    await self._handle(po.decode(message.payload))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - surfaced to changed_keys()
            self.failure = exc
            async with self.changed:
                self.changed.notify_all()

    async def _handle(self, msg: po.PgOutputMessage) -> None:
        if isinstance(msg, po.Relation):
            key = self.source._keys.get(msg.qualified) or ()
            names = [c.name for c in msg.columns]
            indices = tuple(names.index(k) for k in key) if all(k in names for k in key) else None
            self.relations[msg.oid] = (msg.qualified, indices if key else None)
        elif isinstance(msg, po.Message) and msg.prefix == admin.WATERMARK_PREFIX:
            kind, _, marker = msg.content.decode().partition(":")
            if kind == "low":
                self.open_windows[marker] = set()
            elif kind == "high" and marker in self.open_windows:
                self.closed[marker] = self.open_windows.pop(marker)
                async with self.changed:
                    self.changed.notify_all()
        elif self.open_windows:
            for table, key in self._keys_of(msg):
                for window in self.open_windows.values():
                    window.add((table, key))

    def _keys_of(self, msg: po.PgOutputMessage) -> list[tuple[str, tuple]]:
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

    async def changed_keys(self, marker: str) -> dict[str, set[tuple]]:
        """Keys changed inside the window, by table; waits for the window's high mark."""
        async with self.changed:
            await self.changed.wait_for(lambda: marker in self.closed or self.failure is not None)
        if self.failure is not None:
            raise self.failure
        by_table: dict[str, set[tuple]] = {}
        for table, key in self.closed.pop(marker):
            by_table.setdefault(table, set()).add(key)
        return by_table

    @staticmethod
    def drop_changed(text: pa.Table, shape: TableShape, changed: set[tuple]) -> pa.Table:
        """The chunk rows whose key did not change in the window (anti-join, vectorized)."""
        if not changed:
            return text
        if ALL_KEYS in changed:
            return text.slice(0, 0)
        keys = pa.table(
            {k: pa.array([key[i] for key in changed], pa.string()) for i, k in enumerate(shape.key)}
        )
        kept = text.join(keys, keys=list(shape.key), join_type="left anti")
        return kept.select(text.column_names)


def _text(value: po.Value) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None
