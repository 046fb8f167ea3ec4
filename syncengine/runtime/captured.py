"""The tables a pipeline's stream has captured, remembered from one start to the next, so that
a table whose earlier changes the stream never saw is copied again instead of silently
missing rows.

Two ways a configured table can have changes the stream did not capture:

* it joined ``tables:`` (``collections:``) while nothing ran: the config edited, then the
  daemon restarted or the next ``sync --once`` ran. Its changes stream from then on, but the
  rows it held before were never copied (a ``reload`` copies an added table; a restart did
  not, and the target never even had the table);
* a Postgres table that is another relation now: dropped and created again, or renamed away
  and another created under its name (a migration that rebuilds a table). A publication
  holds a table by OID, so the new one's changes were not published until the engine added
  it again, and the old one's rows stay at the target.

Each start of a pipeline that has a checkpoint compares the configured tables with the ones
noted at its last start (a Postgres table with its OID, :meth:`table_identities`): each one
not noted, or noted as another relation, gets a re-snapshot request
(:mod:`syncengine.runtime.tableops`: copied beside the stream, and the target rows the source
no longer has swept), and the note is rewritten to what the config captures now. A daemon also
looks every :data:`CHECK_SECONDS` while it streams (:func:`watch`) and restarts the pipeline
when a table was replaced, so the start does the above. A first note (a pipeline backfilled
before this note existed) leaves no request: what it captured is not known.

Only streaming sources: an ``incremental`` Postgres source reads each table from its own
cursor, and a source without a table snapshot cannot copy one table (plugin sources)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from syncengine.runtime.tableops import RESNAPSHOT
from syncengine.targets.faults import fault_point

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.captured")

#: seconds between two looks at the source's tables while a daemon streams
CHECK_SECONDS = 10.0


def _tracked(pipeline: Pipeline) -> bool:
    return (
        hasattr(pipeline.source, "table_snapshot")
        and getattr(pipeline.config.source, "mode", "cdc") != "incremental"
        and pipeline.config.backfill.copy_rows  # a two-way reverse direction copies nothing
    )


async def _now(pipeline: Pipeline) -> dict[str, str | None]:
    """The configured tables, each with the source's identity of it (None: it has none)."""
    key = pipeline.config.source_key
    tables = sorted({key(t) for t in pipeline.config.source.table_names()})
    identify = getattr(pipeline.source, "table_identities", None)
    found = await identify() if identify is not None else {}
    return {t: found.get(t) for t in tables}


async def remember(pipeline: Pipeline) -> None:
    """Note every configured table as captured (after a backfill that copied them all)."""
    if _tracked(pipeline):
        pipeline.state.set_captured_tables(pipeline.name, await _now(pipeline))


def note_added(state: StateStore, pipeline: str, tables: list[str]) -> None:
    """Note tables a ``reload`` added (their copy is requested by it) as captured, identity
    not known: the next start would otherwise ask for their copy a second time."""
    noted = state.captured_tables(pipeline)
    if noted is not None:
        state.set_captured_tables(pipeline, {**noted, **{t: noted.get(t) for t in tables}})


async def catch_up(pipeline: Pipeline) -> list[str]:
    """Leave a re-snapshot request for each table the stream did not capture since the last
    start (see the module docstring); the tables asked for."""
    if not _tracked(pipeline):
        return []
    now = await _now(pipeline)
    noted = pipeline.state.captured_tables(pipeline.name)
    asked = []
    if noted is not None:
        for table, identity in now.items():
            reason = _missed(table, identity, noted)
            if reason is None:
                continue
            request = pipeline.state.request_table(pipeline.name, table, RESNAPSHOT, None)
            log.warning(
                "%s: %s %s: its rows are copied again (request %d)",
                pipeline.name, table, reason, request,
            )  # fmt: skip
            asked.append(table)
    # the new note only once every copy it needs is asked for: a crash before asks again
    fault_point("captured.before_note")
    pipeline.state.set_captured_tables(pipeline.name, now)
    return asked


def _missed(table: str, identity: str | None, noted: dict[str, str | None]) -> str | None:
    """Why the stream missed changes of ``table`` (None: it did not)."""
    if table not in noted:
        return "joined the pipeline's tables while it was not running"
    before = noted[table]
    if before is not None and identity is not None and before != identity:
        return (
            f"is another table than the one captured (OID {identity}, was {before}: dropped "
            "and created again, or renamed away and replaced, at the source)"
        )
    return None


async def replaced(pipeline: Pipeline) -> list[str]:
    """The configured tables that are another relation than the one noted at the start."""
    noted = pipeline.state.captured_tables(pipeline.name) or {}
    now = await _now(pipeline)
    return [t for t, identity in now.items() if t in noted and _missed(t, identity, noted)]


async def watch(pipeline: Pipeline, stop: asyncio.Event, restart: asyncio.Event) -> None:
    """While a daemon streams: set ``restart`` once ``stop`` is set, or once a table was
    replaced at the source (the start that follows asks for its copy). A failed look is
    tried again at the next one."""
    tracked = _tracked(pipeline) and hasattr(pipeline.source, "table_identities")
    while not restart.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHECK_SECONDS)
        if stop.is_set():
            restart.set()
            return
        if not tracked:
            continue
        try:
            gone = await replaced(pipeline)
        except Exception as exc:  # noqa: BLE001 - the stream reports a source that is away
            log.debug("%s: could not look at the source's tables: %s", pipeline.name, exc)
            continue
        if gone:
            log.warning(
                "%s: %s replaced at the source while streaming: restarting to copy it again",
                pipeline.name, ", ".join(gone),
            )  # fmt: skip
            restart.set()
