"""The decode process: owns the replication connection, decodes pgoutput into Arrow batches.

Started by :mod:`.decodeproc` as ``python -m syncengine.sources.postgres.decodechild FD`` with
one end of a socketpair; everything else (DSN, slot, start, keys, types) arrives in the first
frame. It runs the same :func:`.streaming.stream_changes` the source runs in-process, so
batches, positions and resumes are identical; it sends each batch as an Arrow IPC frame
(:mod:`.frames`); it waits only when :data:`AHEAD_BYTES` are not yet taken by the parent (whose
queue is the backpressure), so it keeps decoding while the parent maps and applies.

What the parent sends back: ``ACK`` positions whose target transaction committed (only those
become the stream's flush LSN, as in-process), ``ADD`` (tables about to join the publication:
their keys and types are taken, then ``ADDED`` is answered) and ``QUIT``. While the parent is
busy and the stream paused, a status update still goes out every ``status_interval`` (the
walsender would otherwise time the connection out).

It ignores SIGINT and SIGTERM: a terminal's Ctrl-C or a service manager's stop signal reaches
the whole process group, and the parent, which drains and then tells this process to stop,
must not lose its stream under it. The parent gone (its end of the socket closed, whatever
killed it) ends this process at once, so none is left behind.
"""

from __future__ import annotations

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)

import asyncio  # noqa: E402 - the signals are ignored before the slow imports
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from syncengine.changes import pos_to_lsn  # noqa: E402
from syncengine.runtime.phases import PhaseClock  # noqa: E402
from syncengine.sources.postgres import frames  # noqa: E402
from syncengine.sources.postgres import pgoutput as po  # noqa: E402
from syncengine.sources.postgres.assembler import ChangeAssembler  # noqa: E402
from syncengine.sources.postgres.connect import connect  # noqa: E402
from syncengine.sources.postgres.replication import ReplicationStream  # noqa: E402
from syncengine.sources.postgres.streaming import stream_changes  # noqa: E402
from syncengine.sources.postgres.wire import pg_time  # noqa: E402

#: a status update goes out when the stream is this late with its own (paused by the parent)
KEEPER_SLACK = 2.0
#: batch bytes (Arrow IPC) this process may be ahead of the parent's reads: a few batches
AHEAD_BYTES = 16 * 1024 * 1024
#: seconds a drain's stream stays open without an acknowledgement (see Child.linger)
LINGER_IDLE = 2.0


class _Forward(logging.Handler):
    """Log records go to the parent, which logs them with its own handlers and filters."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        with contextlib.suppress(Exception):
            frames.send(self.writer, frames.LOG, (record.name, record.levelno, message))


class Child:
    def __init__(self, writer: asyncio.StreamWriter, params: dict[str, Any]) -> None:
        self.writer = writer
        self.params = params
        self.stream: ReplicationStream | None = None
        self.acked = 0
        #: set by every acknowledgement (see linger)
        self.acked_more = asyncio.Event()
        #: the newest resume position handed to the parent (an LSN)
        self.handed = 0
        self.last_commit: tuple[int, float] | None = None
        self.decode = 0.0
        self.assembler = ChangeAssembler(
            params["max_rows"],
            params["keys"],
            params["idle_table"],
            params["typedefs"],
            params["own_origins"],
            params["ignore_origins"],
        )
        self.assembler.keys_at = params.get("keys_at")

    def opened(self, stream: ReplicationStream | None) -> None:
        self.stream = stream
        if stream is not None and self.acked:
            stream.acknowledge(self.acked)

    def committed(self, commit: po.Commit) -> None:
        self.last_commit = (commit.end_lsn, pg_time(commit.commit_time).timestamp())

    def acknowledge(self, lsn: int) -> None:
        self.acked = max(self.acked, lsn)
        if self.stream is not None:
            self.stream.acknowledge(lsn)
            self.stream.send_status()
        self.acked_more.set()

    async def linger(self) -> None:
        """A drain (``until``) reads its end before the parent has applied the last batches.
        Their acknowledgements still go to the server on this stream, each as a status
        update, until the last position handed over is acknowledged (or the parent says
        ``QUIT``, or is gone: this task is then cancelled). Closed at once, the stream would
        leave them to the parent's ``pg_replication_slot_advance``, for which the server
        decodes the slot's WAL again from its restart point: ≈ 0.2-0.3 s at the end of a
        1M-change drain, on one core. A parent that acknowledges nothing for
        :data:`LINGER_IDLE` seconds may be one that reads the whole stream before it
        acknowledges (the source allows that): the stream then ends, and the parent confirms
        at close as before."""
        while self.acked < self.handed:
            self.acked_more.clear()
            try:
                await asyncio.wait_for(self.acked_more.wait(), LINGER_IDLE)
            except TimeoutError:
                return

    def took(self, phase: str, seconds: float) -> None:
        self.decode += seconds

    def facts(self) -> dict[str, Any]:
        """What every frame to the parent carries: decode seconds since the last one, and
        the newest commit read (for the source's lag)."""
        decode, self.decode = self.decode, 0.0
        return {"decode": decode, "last_commit": self.last_commit}

    async def run(self) -> None:
        p = self.params

        async def connect_source(replication: bool = False) -> Any:
            return await connect(p["dsn"], p["query_timeout"], replication)

        async for batch in stream_changes(
            connect_source,
            p["slot"],
            p["publication"],
            p["start"],
            p["until"],
            self.assembler,
            p["max_wait"],
            p["heartbeat"],
            self.opened,
            self.committed,
            PhaseClock(self.took),
            self.linger,
        ):
            header = {"table": batch.table, "key": batch.key, "meta": dict(batch.meta)}
            resume = batch.meta.get("resume")
            if resume is not None:
                self.handed = max(self.handed, pos_to_lsn(str(resume)))
            oid = batch.meta.get("relation")
            if isinstance(oid, int) and batch.unsent_columns:
                header["types"] = self.assembler.column_types(oid)  # for the moved-key reads
            header.update(self.facts())
            frames.send(self.writer, frames.BATCH, header, frames.batch_body(batch))
            await self.writer.drain()
        frames.send(self.writer, frames.END, self.facts())
        await self.writer.drain()

    async def keep_alive(self) -> None:
        """Status updates while the stream is paused (see the module docstring)."""
        while True:
            stream = self.stream
            interval = stream.status_interval if stream is not None else 1.0
            await asyncio.sleep(min(1.0, interval / 2))
            stream = self.stream
            if stream is not None and time.monotonic() - stream.last_status >= (
                stream.status_interval + min(KEEPER_SLACK, stream.status_interval)
            ):
                with contextlib.suppress(Exception):  # a broken connection: the stream says so
                    stream.send_status()


async def main(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    # decoding goes on while the parent is busy: ``drain`` waits only past this many bytes
    writer.transport.set_write_buffer_limits(high=AHEAD_BYTES)
    first = await frames.receive(reader)
    if first is None or first[0] != frames.PARAMS:
        return 2
    params = first[1]
    root = logging.getLogger()
    root.handlers[:] = [_Forward(writer)]
    root.setLevel(params["log_level"])
    child = Child(writer, params)
    work = asyncio.create_task(child.run())
    keeper = asyncio.create_task(child.keep_alive())

    async def listen() -> None:
        while (message := await frames.receive(reader)) is not None:
            kind, header, _ = message
            if kind == frames.ACK:
                child.acknowledge(header)
            elif kind == frames.WANT and child.stream is not None:
                child.stream.want()
            elif kind == frames.ADD:
                child.assembler.add_tables(*header)
                frames.send(writer, frames.ADDED, None)
            elif kind == frames.QUIT:
                break
        work.cancel()  # told to stop, or the parent is gone

    listener = asyncio.create_task(listen())
    code = 0
    try:
        try:
            await work
        except asyncio.CancelledError:
            return 0  # told to quit, or the parent is gone
        except Exception as exc:  # noqa: BLE001 - every failure goes to the parent to raise
            code = 1
            with contextlib.suppress(Exception):
                frames.send(writer, frames.ERROR, frames.error_header(exc))
                await asyncio.wait_for(writer.drain(), 10)
        # the parent reads up to this last frame, then says QUIT (or is gone): closing first
        # could make its next ack fail and hide the frame behind a broken pipe
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener, 60)
        return code
    finally:
        for task in (listener, keeper):
            task.cancel()
        with contextlib.suppress(Exception):
            writer.close()


if __name__ == "__main__":
    code = asyncio.run(main(int(sys.argv[1])))
    sys.stdout.flush()
    os._exit(code)
