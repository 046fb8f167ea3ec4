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

The default on a machine with two cores or more (``SYNCENGINE_PG_DECODE=auto``); ``inline``
decodes in this process, ``process`` forces the child. On the 2-core benchmark machine, quiet,
the split drained the pgbench workload 1.27× and the 1M-change workload 1.05× as fast as
inline (same session), at ≈ 0.5 s more start-up and ≈ 1 µs a change of IPC. With one core
there is nothing to win: the two processes would only take turns.

A child takes ≈ 1 s to start (a Python interpreter importing pyarrow and psycopg), and a
pipeline that restarts (a reload that adds or removes a table, a retry after a dropped
connection) would hold its stream back that long. So once a child has run for
:data:`SPARE_AFTER` seconds, one more is started and left waiting for its parameters (one per
process, ≈ 95 MB resident): the next stream to start takes it and starts at once, and
leaves a new spare behind the same way. A spare ends by itself when this process is gone.
A stream that ends by itself (a drain up to a position: ``sync``) leaves none behind: the
spare's start-up (≈ 0.5 s of CPU) would compete with the drain it cannot serve. ``sync``
starts its child with :func:`start_early` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import syncengine
from syncengine.changes import ChangeBatch
from syncengine.errors import SourceUnavailable
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.postgres import frames
from syncengine.sources.postgres.columns import PgType

log = logging.getLogger("syncengine.sources.postgres")

ENV = "SYNCENGINE_PG_DECODE"
#: seconds the child gets to close its connections after QUIT before it is killed
QUIT_GRACE = 10.0
#: bytes read ahead from the child's socket (a batch is ~2.5 MB at 10,000 rows of 8 columns)
READ_LIMIT = 4 * 1024 * 1024
#: seconds a child runs before a spare is started beside it (not while a restart catches up)
SPARE_AFTER = 5.0


def _cores() -> int:
    """The cores this process may run on (its affinity, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def in_process() -> bool:
    """Whether to decode in this process (see the module docstring)."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode == "auto":
        return _cores() < 2
    return mode != "process"


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
        started = _SPARES.take()
        self.proc, mine = started.proc, started.sock
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=mine, limit=READ_LIMIT)
            params = {**self.params, "log_level": logging.getLogger().getEffectiveLevel()}
            frames.send(self._writer, frames.PARAMS, params)
            on_open(self)
            if self.params["until"] is None:  # a drain ends by itself: no restart to serve
                _SPARES.replenish(SPARE_AFTER)
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


@dataclass
class _Started:
    """A child process and this process's end of its socket."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket
    env: dict[str, str]

    def discard(self) -> None:
        """An unused child has nothing to close: killed."""
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class _Spares:
    """At most one child started ahead of need (see the module docstring)."""

    def __init__(self) -> None:
        self.spare: _Started | None = None
        #: the loop a spare is due on (a closed loop's timer never fires: tests run several)
        self.due: asyncio.AbstractEventLoop | None = None

    def take(self) -> _Started:
        """The spare when it is alive and was started with this environment, else a new
        child."""
        spare, self.spare = self.spare, None
        if spare is not None:
            if spare.proc.poll() is None and _same_env(spare.env, _child_env()):
                return spare
            spare.discard()
        return _start()

    def replenish(self, after: float) -> None:
        """Start a spare in ``after`` seconds, unless there is one or one is due."""
        loop = asyncio.get_running_loop()
        if self.spare is None and self.due is not loop:
            self.due = loop
            loop.call_later(after, self._start_spare)

    def _start_spare(self) -> None:
        self.due = None
        self.start_now()

    def start_now(self) -> None:
        """Start a spare unless there is one."""
        if self.spare is None:
            try:
                self.spare = _start()
            except OSError as exc:  # no spare: the next stream starts its own child
                log.warning("could not start a spare decode process: %s", exc)


_SPARES = _Spares()


def start_early() -> None:
    """Start the next stream's child now, unless decoding is inline or one is waiting.

    For a one-shot drain (``sync``): its child then imports while this process is still
    loading, compiling and opening the pipeline, instead of after it, when the stream starts
    (≈ 0.6 s of the drain's wall time on the 2-core benchmark machine)."""
    if not in_process():
        _SPARES.start_now()


def _start() -> _Started:
    """A child that waits for its parameters on its end of a new socket pair."""
    mine, theirs = socket.socketpair()
    for end in (mine, theirs):
        frames.widen(end)
    env = _child_env()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncengine.sources.postgres.decodechild"]
            + [str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    return _Started(proc, mine, env)


def _child_env() -> dict[str, str]:
    """This environment, with the folder this ``syncengine`` was imported from first on the
    child's path (it may come from a source tree rather than an installed package)."""
    root = str(Path(syncengine.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


#: variables a library puts into ``os.environ`` for itself when imported, which no child
#: depends on: Polars sets its allocator's (jemalloc) configuration. ``sync`` starts its child
#: before the first group imports Polars; counting this one would discard that child every time.
_SET_BY_IMPORTS = frozenset({"_RJEM_MALLOC_CONF"})


def _same_env(started: Mapping[str, str], now: Mapping[str, str]) -> bool:
    """Whether a child started with ``started`` runs as one started with ``now`` would."""

    def chosen(env: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k not in _SET_BY_IMPORTS}

    return chosen(started) == chosen(now)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"
