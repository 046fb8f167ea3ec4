"""The ``syncengine`` entry point.

Signal handlers go in before any command runs: a command imports polars, pyarrow and the
drivers when it starts (``--help``, ``validate`` and the like never load them), which takes
seconds on a busy machine, and a SIGTERM in that window must not kill the process with the
default handler (a supervisor stopping a daemon that is still starting expects a clean exit).
Once a command runs its event loop, the loop's own handlers take over.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from syncengine.lazy import lazy_exports

_OPTIONS_WITH_VALUES = {"--log-format", "--log-level"}


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


def main() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_while_starting)
    from syncengine.cli.commands import cli

    cli(prog_name="syncengine")


#: ``from syncengine.cli.main import cli`` still works (the group loads on first use)
__getattr__ = lazy_exports(__name__, {"cli": "syncengine.cli.commands"})
