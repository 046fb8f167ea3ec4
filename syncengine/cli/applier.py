"""Who applies a pipeline's changes right now, for the commands that hand it per-table work.

``pause``, ``resume``, ``resnapshot`` (and ``backfill --table``) and ``checkpoints remove``
leave a request in the state store when something applies the pipeline, and wait for it to
carry the request out; otherwise they do the work in the foreground, under the pipeline's lock.
Something applies it when

* a daemon (``syncengine run``) holds the pipeline's lock, or
* in cluster mode, a stream attempt said so in the state store within the last two heartbeat
  timeouts (each attempt beats on every heartbeat, :mod:`syncengine.cluster.activities`). The
  request reaches a worker only through a shared state store (``state: postgresql://…``): with
  a state file on each machine, the command refuses rather than leave a request no worker
  reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from syncengine.config.models import Config
from syncengine.errors import UsageError
from syncengine.state.locks import Holder
from syncengine.state.protocols import StateStore

#: the lock purpose of ``syncengine run``
DAEMON = "run"


@dataclass(frozen=True)
class Applier:
    """A daemon (``daemon``: its lock holder) or a cluster stream attempt (``attempt``)."""

    daemon: Holder | None = None
    attempt: str | None = None

    def describe(self) -> str:
        if self.daemon is not None:
            where = f" on {self.daemon.host}" if self.daemon.host else ""
            return f"the running daemon (pid {self.daemon.pid}{where})"
        return f"the cluster's stream ({self.attempt})"


def running_applier(config: Config, state: StateStore, pipeline: str) -> Applier | None:
    """What applies ``pipeline`` now (see the module docstring), or None."""
    holder = state.lock(pipeline, "resnapshot").holder()
    if holder is not None and holder.purpose == DAEMON:
        return Applier(daemon=holder)
    if config.cluster is None:
        return None
    beat = state.applier(pipeline)
    if beat is None or time.time() - beat[1] > 2 * config.cluster.heartbeat:
        return None
    from syncengine.state import is_shared

    if not is_shared(config.state):
        raise UsageError(
            f"{pipeline} streams on a cluster worker, which cannot read this machine's state "
            f"file {config.state}",
            hint="give every worker and this command the same shared state store "
            "(state: postgresql://…, docs/cluster.md)",
        )
    return Applier(attempt=beat[0])
