"""Decoding in a second process, so it runs on another core than mapping and applying.

pgoutput decoding is Python (≈ 8 µs a change, 70 % of the engine's CPU in a drain), and in
the same interpreter it takes turns with map, resolve and the target's staging; the GIL rules
out a thread. :class:`DecodeProcess` starts :mod:`.decodechild`, which owns the replication
connection and runs the very same :func:`.streaming.stream_changes`, and receives its batches
as Arrow IPC frames (:mod:`.frames`, ≈ 0.5 µs a change).

What does not change: a position is acknowledged to the server only after its target
transaction committed (:meth:`acknowledge` forwards the runtime's acks; the child reports only
those as flushed); the child answers the server while this process is busy; errors raised in
the child are raised here as the same class with the same message (so the same retry policy
applies). What is new: the child dying (killed, crashed) raises :class:`SourceUnavailable`
here (retriable: the supervisor reconnects and resumes from the checkpoint); the stream ending
or being cancelled (SIGTERM drains, then stops the stream) tells the child to quit and waits
for it, killing it if it does not go; the child quits by itself when this process is gone.

On the 2-core benchmark machine, quiet, the split drained the pgbench workload 1.27× and the
1M-change workload 1.05× as fast as inline (same session), at ≈ 0.5 s more start-up and ≈ 1 µs
a change of IPC. When to decode in a child, and how children are started ahead of need (a
spare, or ``sync``'s early child): :mod:`.decodespawn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from syncengine.changes import ChangeBatch
from syncengine.errors import SourceUnavailable
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.postgres import frames
from syncengine.sources.postgres.columns import PgType
from syncengine.sources.postgres.decodespawn import SPARES

log = logging.getLogger("syncengine.sources.postgres")

#: seconds the child gets to close its connections after QUIT before it is killed
QUIT_GRACE = 10.0
#: bytes read ahead from the child's socket (a batch is ~2.5 MB at 10,000 rows of 8 columns)
READ_LIMIT = 4 * 1024 * 1024


class DecodeProcess:
    """One stream's decode process. :meth:`batches` starts it; acks go through
    :meth:`acknowledge` while it runs (the source's live stream)."""

    def __init__(self, params: Mapping[str, Any], phases: PhaseClock | None = None) -> None:
        self.params = dict(params)
        self.phases = phases
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._types: dict[int, dict[str, PgType]] = {}
        #: answered when the child took the tables of an ``add_tables``
        self._adding: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def column_types(self, oid: int) -> dict[str, PgType]:
        """A relation's column types, as of the last batch of it with unsent columns."""
        return self._types.get(oid, {})

    def acknowledge(self, lsn: int) -> None:
        if self._writer is not None and not self._writer.is_closing():
            frames.send(self._writer, frames.ACK, lsn)

    def send_status(self, reply: bool = False) -> None:
        """The child sends a status update with every acknowledgement."""

    def want(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            frames.send(self._writer, frames.WANT, None)

    async def add_tables(
        self, keys: Mapping[str, tuple[str, ...]], typedefs: Mapping[int, str]
    ) -> None:
        """Hand the child the keys and user types of tables about to join the publication,
        and return once it has them: the publication may change only then, or the child
        could decode a table's first change without its key. The answer comes in order with
        the batches, so it waits for the batches sent before it to be read: the stream must be
        read meanwhile by another task (the runtime's reader), or this waits forever."""
        if self._writer is None or self._writer.is_closing():
            raise SourceUnavailable("the pgoutput decode process is not running")
        self._adding = asyncio.get_running_loop().create_future()
        frames.send(self._writer, frames.ADD, (dict(keys), dict(typedefs)))
        await self._adding

    async def batches(
        self,
        on_open: Callable[[DecodeProcess | None], None],
        on_commit: Callable[[tuple[int, float]], None],
    ) -> AsyncIterator[ChangeBatch]:
        started = SPARES.take()
        self.proc, mine = started.proc, started.sock
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=mine, limit=READ_LIMIT)
            params = {**self.params, "log_level": logging.getLogger().getEffectiveLevel()}
            frames.send(self._writer, frames.PARAMS, params)
            on_open(self)
            if self.params["until"] is None:  # a drain ends by itself: no restart to serve
                SPARES.replenish()
            while True:
                message = await frames.receive(reader)
                if message is None:
                    raise await self._died()
                kind, header, body = message
                if kind == frames.LOG:
                    name, level, text = header
                    logging.getLogger(name).log(level, "%s", text)
                    continue
                if kind == frames.ERROR:
                    raise frames.rebuild_error(header)
                if kind == frames.ADDED:
                    if self._adding is not None and not self._adding.done():
                        self._adding.set_result(None)
                    continue
                self._facts(header, on_commit)
                if kind == frames.END:
                    return
                if "types" in header:
                    self._types[header["meta"]["relation"]] = header["types"]
                yield frames.batch_from(header, body)
        finally:
            if self._adding is not None and not self._adding.done():
                self._adding.set_exception(
                    SourceUnavailable("the stream ended before its decode process took the tables")
                )
            on_open(None)
            await self._stop()
            mine.close()  # already closed with its transport, unless connecting it failed

    def _facts(
        self, header: dict[str, Any], on_commit: Callable[[tuple[int, float]], None]
    ) -> None:
        if self.phases is not None and header["decode"]:
            self.phases.add("decode", header["decode"])
        if header["last_commit"] is not None:
            on_commit(header["last_commit"])

    async def _died(self) -> Exception:
        code = await self._exit_code(2.0)
        how = "is not answering" if code is None else _exit_text(code)
        return SourceUnavailable(
            f"the pgoutput decode process (pid {self.pid}) {how}; reconnecting",
            hint="see the log above for why it stopped (killed, out of memory?)",
        )

    async def _exit_code(self, within: float) -> int | None:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (code := self.proc.poll()) is None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return code

    async def _stop(self) -> None:
        """Tell the child to quit, give it :data:`QUIT_GRACE` to close its connections, then
        kill it; never return with it still running (not even when cancelled again)."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                with contextlib.suppress(Exception):
                    frames.send(writer, frames.QUIT, None)
                    await writer.drain()
                if self.proc is not None and await self._exit_code(QUIT_GRACE) is None:
                    log.warning("the decode process (pid %s) did not quit; killing it", self.pid)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if writer is not None:
                writer.close()


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"
