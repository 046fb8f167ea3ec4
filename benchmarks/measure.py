"""Wall time and peak RSS of one subprocess.

Peak RSS comes from ``os.wait4`` on that very child (``ru_maxrss``), not from the benchmark
process or other children (psql, pg_recvlogical), so the figure is the syncengine process's own
high-water mark, exact rather than sampled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.core import BenchmarkError


@dataclass
class ProcessRun:
    args: list[str]
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


class Process:
    """A started subprocess whose end is collected with ``wait4`` (for its peak RSS)."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
        )
        self._result: ProcessRun | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        if self._result is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self._result is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float | None = None) -> ProcessRun:
        if self._result is not None:
            return self._result
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            self.proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except BaseException:  # interrupted: never leave the child running
            self.proc.kill()
            os.wait4(self.proc.pid, 0)
            raise
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._result = ProcessRun(
            self.args,
            seconds,
            usage.ru_maxrss / 1024.0,  # kilobytes on Linux
            self.proc.returncode,
            _read(self._out),
            _read(self._err),
            timed_out.is_set(),
        )
        return self._result

    def stop(self, timeout: float = 60.0) -> ProcessRun:
        """SIGTERM, then collect (SIGKILL after ``timeout``)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)


def _read(handle: object) -> str:
    handle.seek(0)  # type: ignore[attr-defined]
    data = handle.read()  # type: ignore[attr-defined]
    handle.close()  # type: ignore[attr-defined]
    return data.decode("utf-8", "replace")


def run_process(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    what: str | None = None,
) -> ProcessRun:
    """Run to completion; with ``check`` a non-zero exit raises with the command and its stderr."""
    result = Process(args, env).wait(timeout)
    if check and (result.returncode != 0 or result.timed_out):
        raise BenchmarkError(describe_failure(result, what))
    return result


def describe_failure(result: ProcessRun, what: str | None = None) -> str:
    command = " ".join(_short(a) for a in result.args)
    how = (
        f"timed out after {result.seconds:.0f} s"
        if result.timed_out
        else f"exited {result.returncode} after {result.seconds:.1f} s"
    )
    label = f"{what}: " if what else ""
    return f"{label}`{command}` {how}:\n{result.tail()}"


def _short(arg: str) -> str:
    """Commands in messages name files by their basename; full temp paths are noise."""
    if arg.startswith("/") and "/" in arg[1:]:
        return os.path.basename(arg)
    return arg


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``"""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
