"""Starting decode processes (:mod:`.decodechild`), kept free of Arrow and the engine's
models: ``sync`` starts its child (:func:`start_early`) right after reading the config, and
importing pyarrow first (≈ 0.25 s) would only delay that child's own start-up.

Whether to decode in a child at all: the default on a machine with two cores or more
(``SYNCENGINE_PG_DECODE=auto``); ``inline`` decodes in this process, ``process`` forces the
child. With one core there is nothing to win: the two processes would only take turns.

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
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import syncengine

log = logging.getLogger("syncengine.sources.postgres")

ENV = "SYNCENGINE_PG_DECODE"
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

    def replenish(self) -> None:
        """Start a spare in :data:`SPARE_AFTER` seconds, unless there is one or one is due."""
        loop = asyncio.get_running_loop()
        if self.spare is None and self.due is not loop:
            self.due = loop
            loop.call_later(SPARE_AFTER, self._start_spare)

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


SPARES = _Spares()


def start_early() -> None:
    """Start the next stream's child now, unless decoding is inline or one is waiting.

    For a one-shot drain (``sync``): its child then imports while this process is still
    loading, compiling and opening the pipeline, instead of after it, when the stream starts
    (≈ 0.6 s of the drain's wall time on the 2-core benchmark machine)."""
    if not in_process():
        SPARES.start_now()


def _start() -> _Started:
    """A child that waits for its parameters on its end of a new socket pair."""
    mine, theirs = socket.socketpair()
    for end in (mine, theirs):
        widen(end)
    env = _child_env()
    try:
        proc = subprocess.Popen(
            # -P: not the working directory first on the path (``-m`` puts it there), where
            # another ``syncengine`` (a source checkout) would be imported instead of this one
            [sys.executable, "-P", "-m", "syncengine.sources.postgres.decodechild"]
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


#: send/receive buffer of the socketpair: a batch body of a few megabytes goes out in one
#: ``send``, instead of being copied into the transport's buffer and trickled out in the
#: default 208 KiB steps, each of which shifted the rest of the buffer (``del buf[:n]``)
SOCKET_BUFFER = 4 * 1024 * 1024


def widen(sock: socket.socket) -> None:
    """Ask for :data:`SOCKET_BUFFER` on ``sock`` (the kernel caps it at its own maximum)."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
