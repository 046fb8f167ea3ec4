"""Wall time and peak RSS of one subprocess.

Peak RSS is the child's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read every
50 ms until it exits (it is reaped only after the sampler stopped, so its pid cannot be reused
under the sampler). Not ``ru_maxrss`` from ``wait4``: Linux carries the *forking* process's
high-water mark across ``exec`` into the child's ``ru_maxrss``, so a child of a benchmark
process that holds 3 GB of baseline documents reported 3 GB whatever it used itself (measured:
``/bin/true`` forked from a 1.5 GB Python reports 1,514 MB). ``VmHWM`` belongs to the new
image only. The samples miss at most the growth of the last 50 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
    #: user + system CPU seconds of the process (and the children it reaped): on a loaded
    #: machine the figure wall time cannot give
    cpu_seconds: float = 0.0

    def tail(self, lines: int = 12) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


SAMPLE_SECONDS = 0.05


def high_water_mb(pid: int) -> float | None:
    """``VmHWM`` of a running process in MB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


class PeakRss(threading.Thread):
    """Samples a child's ``VmHWM`` until :meth:`finish`; ``peak_mb`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.peak_mb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            sample = high_water_mb(self.pid)
            if sample is not None:
                self.peak_mb = max(self.peak_mb, sample)
            if self._done.wait(SAMPLE_SECONDS):
                return

    def finish(self) -> float:
        self._done.set()
        self.join()
        return self.peak_mb


class Process:
    """A started subprocess, timed and its peak RSS sampled (see the module docstring)."""

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
        self._rss = PeakRss(self.proc.pid)
        self._rss.start()
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
            # exited, not reaped: the pid stays ours until the sampler has stopped
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
            seconds = time.perf_counter() - self.started
            peak_mb = self._rss.finish()
            _, status, usage = os.wait4(self.proc.pid, 0)
        except BaseException:  # interrupted: never leave the child running
            self.proc.kill()
            self._rss.finish()
            os.waitpid(self.proc.pid, 0)
            raise
        finally:
            if timer:
                timer.cancel()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._result = ProcessRun(
            self.args,
            seconds,
            peak_mb,
            self.proc.returncode,
            _read(self._out),
            _read(self._err),
            timed_out.is_set(),
            usage.ru_utime + usage.ru_stime,
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


def in_turns(attempt: int, runs: Sequence[Callable[[], None]]) -> None:
    """Run ``runs`` starting with a different one each attempt (attempt 0: in order), so
    that no consumer always runs right after the same other one: in as many attempts as
    there are consumers, each takes every position once."""
    start = attempt % len(runs)
    for run in [*runs[start:], *runs[:start]]:
        run()
