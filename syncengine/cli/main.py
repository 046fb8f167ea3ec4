"""The ``syncengine`` entry point.

Signal handlers go in before any command runs: a command imports polars, pyarrow and the
drivers when it starts (``--help``, ``validate`` and the like never load them), which takes
seconds on a busy machine, and a SIGTERM in that window must not kill the process with the
default handler (a supervisor stopping a daemon that is still starting expects a clean exit).
Once a command runs its event loop, the loop's own handlers take over.

Two start and end costs of a data command are cut here, before anything is imported:

* NumPy (loaded with Arrow) starts OpenBLAS, which spawns a thread per core at import and joins
  them at exit; the engine does no linear algebra, so ``OPENBLAS_NUM_THREADS`` defaults to 1
  (a user's own setting wins).
* Tearing the interpreter down after a command that loaded Arrow, NumPy, the drivers and the
  config models (~500 modules) frees every object one by one: about 0.1 s of a 2.3 s backfill
  (docs/benchmarks-findings.md, "where a passthrough backfill's wall time goes"). When the
  command has finished (what it wrote is committed, its connections are closed) and nothing
  else runs (no other thread, no child process), the process flushes its output and logs and
  ends with ``os._exit`` instead, as mypy does. A command that loaded none of those modules
  exits the ordinary way.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
import threading
from types import FrameType

from syncengine.lazy import lazy_exports

_OPTIONS_WITH_VALUES = {"--log-format", "--log-level"}

#: modules whose teardown is what makes an ordinary exit slow
_SLOW_TO_TEAR_DOWN = ("numpy", "pyarrow")


def _command(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _stop_while_starting(signum: int, frame: FrameType | None) -> None:
    # Nothing is in flight yet: a daemon or worker stops cleanly (0), a one-shot job did not
    # run (1).
    sys.exit(0 if _command(sys.argv[1:]) in ("run", "worker") else 1)


def _nothing_left_running() -> bool:
    """No other thread and no child process that an ordinary exit would wait for or clean up."""
    if threading.active_count() > 1:
        return False
    children = sys.modules.get("multiprocessing")
    return children is None or not children.active_children()


def _leave(code: int) -> None:
    """End the process with ``code`` without tearing the interpreter down, when that is safe
    and worth it (see the module docstring); otherwise return (the caller exits normally)."""
    warmup = sys.modules.get("syncengine.runtime.warmup")
    if warmup is not None:
        warmup.settle()  # imports still running must not meet the interpreter's teardown
    if not any(name in sys.modules for name in _SLOW_TO_TEAR_DOWN):
        return
    if not _nothing_left_running():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: the ordinary exit reports it
            return
    os._exit(code)


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_while_starting)
    # At exit every object is garbage anyway: frozen, the interpreter's last collections skip
    # them instead of walking a heap that holds pyarrow, Polars and the drivers (0.1-0.3 s of
    # every command's exit, measured; see docs/benchmarks-findings.md).
    atexit.register(gc.freeze)
    from syncengine.cli.commands import cli

    try:
        cli(prog_name="syncengine")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            _leave(done.code or 0)
        raise


#: ``from syncengine.cli.main import cli`` still works (the group loads on first use)
__getattr__ = lazy_exports(__name__, {"cli": "syncengine.cli.commands"})
