"""Tables added to a cluster pipeline: ``apply`` asks for their rows to be copied.

In embedded mode ``reload`` copies a table added to ``tables:`` beside the running stream. In
cluster mode the workers take a new config when ``apply`` updates the stream workflow, so
``apply`` does the part a reload does before the restart: for each table the config names now
and did not at the previous ``apply`` (kept in the state store), it leaves a re-snapshot
request. The stream attempt that runs the new config captures the table and carries the
request out beside its groups (:class:`~syncengine.runtime.tableops.TableOps`); an attempt
still on the old config does not capture it and leaves the request alone. The request reaches
a worker only through a shared state store; with a state file per worker nothing is asked
(the first ``apply`` of a pipeline only notes its tables: its initial backfill copies them).
"""

from __future__ import annotations

from syncengine.config.models import Config
from syncengine.state.protocols import StateStore


def request_added(config: Config, state: StateStore, names: list[str]) -> list[str]:
    """Leave a copy request per added table of each of ``names``; what was done, to print."""
    from syncengine.runtime.tableops import RESNAPSHOT

    said = []
    for name in names:
        spec = config.pipelines[name]
        tables = sorted(spec.source_key(t) for t in spec.source.table_names())
        before = state.applied_tables(name)
        if before is not None:
            for table in sorted(set(tables) - set(before)):
                request = state.request_table(name, table, RESNAPSHOT, None)
                said.append(
                    f"{name}: {table} added: its rows are copied beside the stream once it "
                    f"captures the table (request {request})"
                )
            for table in sorted(set(before) - set(tables)):
                said.append(
                    f"{name}: {table} no longer captured; target table and state kept "
                    "(syncengine checkpoints CONFIG remove --pipeline P --table T removes it)"
                )
        state.set_applied_tables(name, tables)
    return said
