"""Per-pipeline exclusive locks, so a daemon, a cron ``sync`` and a ``backfill`` never overlap.

An ``fcntl`` lock on a file beside the state store: the kernel releases it when the holder
dies, even by SIGKILL, so there is no stale lock to clean up. The file records who holds it,
for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType

from syncengine.errors import LockHeld


class PipelineLock:
    def __init__(self, folder: Path, pipeline: str, purpose: str) -> None:
        self.path = folder / f"{pipeline}.lock"
        self.pipeline = pipeline
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> PipelineLock:
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

    def holder(self) -> tuple[int, str] | None:
        """(pid, purpose) of the process holding this lock now, or None when nobody does: how
        ``resnapshot`` and ``reload`` find the running daemon."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _holder_info(fd)
                pid = info.get("pid")
                return (pid, str(info.get("purpose", ""))) if isinstance(pid, int) else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PipelineLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


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
