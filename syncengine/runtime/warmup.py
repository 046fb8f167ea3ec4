"""Load what a backfill's first decoded batch needs while the source is still busy with it.

The first batch of a decoded snapshot compiles its mapping (Polars, sqlglot and the mapping
compiler) and builds the strategy's resolver (the conflicts package): 0.15-0.2 s of imports on
the critical path, paid after the first rows arrived, while the source's planning and first
read (a count and a ``find`` on MongoDB) left the engine idle. A daemon thread imports them
when the snapshot starts instead, in the order the first batch would, so the imports overlap the
wait; a batch that arrives earlier simply waits on the module's import lock (loaded once).

Nothing is warmed for a source that may pass its chunks through as raw data: a Postgres
passthrough backfill needs neither Polars nor the mapping compiler.

A command can end before the imports do (a ``sync --once`` that found nothing to apply). The
thread is not a daemon and the entry point joins it (:func:`settle`) before it exits: an import
still running while the interpreter tears down can abort the process (a native extension
taking the GIL during finalization: "PyGILState_Release: thread state must be current"), after
the command's work was committed but with exit status -6.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence

log = logging.getLogger("syncengine.runner")

#: what ``Pipeline.compile`` and ``Pipeline._resolver`` import, in that order
MODULES = ("syncengine.mappings", "syncengine.conflicts.resolver")

#: what a stream's first change group imports on first use: map, compaction, resolve, apply
FIRST_GROUP_IMPORTS = (
    "polars",
    "syncengine.lastchange",
    "syncengine.mappings",
    "syncengine.mappings.keys",
    "syncengine.conflicts",
    "syncengine.conflicts.resolver",
    "numpy.ma",  # by Arrow → Polars conversions; the inline decoder imports it before
)


def _load(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the batch's own import reports it properly
            log.debug("warm-up import of %s failed", name, exc_info=True)
            return


#: warm-up threads started and not yet joined
_running: list[threading.Thread] = []


def warm_up(modules: Sequence[str] = MODULES) -> threading.Thread:
    """Start importing ``modules`` in a thread; returns it (tests join it)."""
    thread = threading.Thread(target=_load, args=(modules,), name="syncengine-warmup")
    thread.start()
    _running[:] = [*(t for t in _running if t.is_alive()), thread]  # a daemon warms up often
    return thread


def settle() -> None:
    """Wait for every warm-up import to finish (a fraction of a second at most)."""
    while _running:
        _running.pop().join()
