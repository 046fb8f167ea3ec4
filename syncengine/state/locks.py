"""Per-pipeline exclusive locks, so a daemon, a cron ``sync`` and a ``backfill`` never overlap.

An ``fcntl`` lock on a file beside the state store: the kernel releases it when the holder
dies, even by SIGKILL, so there is no stale lock to clean up. The file records who holds it,
for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from syncengine.errors import LockHeld


@dataclass(frozen=True)
class Holder:
    """Who holds a pipeline's lock: its pid, what it runs (``run``, ``backfill``…), and the
    host it runs on when that is another machine (None: this one, where the pid can be
    signalled)."""

    pid: int
    purpose: str
    host: str | None = None

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        return f"'{self.purpose}' (pid {self.pid}{where})"


class Lock(Protocol):
    """A per-pipeline exclusive lock, whatever keeps it (a file here, an advisory lock in a
    shared Postgres store: :mod:`syncengine.state.postgres.locks`)."""

    def acquire(self) -> Self:
        """Take it or raise :class:`~syncengine.errors.LockHeld` naming the holder."""
        ...

    def release(self) -> None: ...

    def lost(self) -> bool:
        """Whether this lock, taken, is no longer held (what held it is gone): a shared
        store's lock lives on a connection that can end under its holder."""
        ...

    def holder(self) -> Holder | None:
        """Who holds it now, or None: how ``resnapshot``, ``reload`` and ``checkpoints
        remove`` find the running daemon to hand work to or signal."""
        ...

    def peek(self) -> Holder | None:
        """Who holds it, read without taking anything (the console): taking it, even for a
        moment, could make a daemon starting then refuse to run."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class HeldWhileInside:
    """``with lock:`` takes it for the block (either kind of lock)."""

    def acquire(self) -> Self:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class PipelineLock(HeldWhileInside):
    def __init__(self, folder: Path, pipeline: str, purpose: str) -> None:
        self.path = folder / f"{pipeline}.lock"
        self.pipeline = pipeline
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(
                f"pipeline '{self.pipeline}' is busy: {holder} holds its lock",
                hint=f"wait for it to finish or stop it before running {self.purpose}",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "purpose": self.purpose}).encode())
        self._fd = fd
        return self

    def holder(self) -> Holder | None:
        """The process holding this lock now, or None when nobody does."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _holder_info(fd)
                pid = info.get("pid")
                return Holder(pid, str(info.get("purpose", ""))) if isinstance(pid, int) else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def lost(self) -> bool:
        return False  # the kernel keeps an flock for as long as this process lives

    def peek(self) -> Holder | None:
        """Read from the file; a pid that no longer runs left it (the kernel released the
        lock with it)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
            pid = int(info["pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Holder(pid, str(info.get("purpose", "?")))

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder_info(fd: int) -> dict[str, object]:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _read_holder(fd: int) -> str:
    info = _holder_info(fd)
    if not info:
        return "another process"
    return f"'{info.get('purpose', 'another process')}' (pid {info.get('pid', '?')})"
