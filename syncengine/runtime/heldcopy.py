"""The hold a keyless table's copy needs while the pipeline streams (``resnapshot``, an added
table; :mod:`syncengine.sources.postgres.tablesnap`).

A keyless table's copy replaces the target table at one exact source position C, and the
table's fence (:mod:`syncengine.keyless`) then drops every change at or below C. That is exact
only if none of the table's changes reaches the target between the moment C is taken and the
copy's last row: so before C is taken, the table is paused (:mod:`syncengine.runtime.pausing`:
its stream changes are held durably in the state store, the slot is not held back) and the
copy waits until the applier has confirmed the pause (every group applied after that holds
them; the ones before were committed, all below C). After the last row the pause is resumed:
the applier releases the held changes in order, the fence dropping those at or below C.

A crash anywhere leaves the request ``running`` and the pause in the store: the next start
pauses again (a resuming pause is paused again, nothing released is lost) and copies the
table again, whole, at a new position. In the foreground (no daemon) nothing streams, so
nothing is held: the fence alone orders the next run's replay after the copy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from syncengine.errors import UsageError

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.state.base import TableRequest

log = logging.getLogger("syncengine.tableops")

#: seconds between two looks at whether the applier confirmed the pause
CONFIRM_POLL = 0.05


class HeldCopy:
    """The ``hold`` handed to the source's ``table_snapshot`` for one request."""

    def __init__(self, pipeline: Pipeline, request: TableRequest, foreground: bool) -> None:
        self.pipeline = pipeline
        self.request = request
        self.foreground = foreground
        #: the source asked for it: the copy is keyless (no sweep; release afterwards)
        self.used = False

    async def __call__(self) -> None:
        self.used = True
        if self.foreground:
            return
        state, name, table = self.pipeline.state, self.pipeline.name, self.request.table
        if self.request.status == "pending" and table in state.pauses(name):
            raise UsageError(
                f"{table} is paused and has no key: its copy would take over the pause",
                hint=f"resume it (syncengine resume CONFIG -p {name} --table {table}) first",
            )
        state.request_pause(name, [table], "pausing")
        log.info("%s: %s has no key: its changes are held while it is copied", name, table)
        while (pause := state.pauses(name).get(table)) is None or pause.status != "paused":
            await asyncio.sleep(CONFIRM_POLL)

    def release(self) -> None:
        """After the copy's last row was applied: the held changes flow again, in order."""
        if self.used and not self.foreground:
            self.pipeline.state.request_resume(self.pipeline.name, [self.request.table])
