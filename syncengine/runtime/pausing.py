"""Pause and resume one table while the others flow (``syncengine pause|resume``).

A paused table's stream changes are *held*, not applied: before a group is applied, the batches
of paused tables are taken out of it and committed to the state store (one SQLite transaction,
before the target commits the rest of the group with its checkpoint). The source is then
acknowledged as usual, so the slot / change stream is never held back by a paused table; the
price is disk in the state store (the held batches, Arrow IPC, zstd).

Crash safety. Holding commits before the checkpoint: a crash in between replays the group, and
the changes at or below the table's ``held_through`` fence (written with the held rows) are
recognised and not held twice. Releasing applies the held batches in the order they were held,
a group of about ``batch.max_rows`` changes at a time, through the normal pipeline (mapping,
conflicts, apply, with no checkpoint), and forgets each group only after the target committed
it. A crash in between applies that group again: the per-key position fence (or the keyless
table's fence) drops what the target already has, and without a fence (incremental polling) the
same rows are written again in the same order, so the result is the same. New changes of the
table keep being held until nothing is left; then the pause ends in the transaction that finds
the store empty. The applier runs releases between groups, so no stream change of the table can
overtake a held one.

Requests come through the state store: ``pause`` writes ``pausing`` (the applier confirms it as
``paused`` before its next group), ``resume`` writes ``resuming`` (the applier, or the command
itself when no process holds the pipeline's lock, releases). No table in the user's database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import REPLAYED, ChangeBatch
from syncengine.runtime import heldbatch
from syncengine.state.base import Pause

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline

log = logging.getLogger("syncengine.pausing")

#: held rows read at once while releasing (each holds one or more source batches)
RELEASE_FETCH = 64
#: what a pause holds: stream changes; snapshot chunks (and their reconciliation deletes) are
#: copies of current state that a backfill or re-snapshot was explicitly asked for
_NOT_HELD = ("chunk", "snapshot", "copied", "deletes")


def is_held(batch: ChangeBatch, pauses: dict[str, Pause]) -> bool:
    return batch.table in pauses and not any(batch.meta.get(k) for k in _NOT_HELD)


def hold_paused(
    pipeline: Pipeline, batches: Sequence[ChangeBatch], pauses: dict[str, Pause]
) -> list[ChangeBatch]:
    """The batches to apply now; those of paused tables (``pauses``, as the caller read them)
    are committed to the state store."""
    state = pipeline.state
    if not pauses:
        return list(batches)
    if any(p.status == "pausing" for p in pauses.values()):
        _confirm(pipeline)
    flowing: list[ChangeBatch] = []
    fresh: dict[str, list[ChangeBatch]] = {}
    fences = {t: p.held_through for t, p in pauses.items()}
    for batch in batches:
        if not is_held(batch, pauses):
            flowing.append(batch)
            continue
        after = _after(batch, fences[batch.table])  # a replay holds nothing twice
        if after.num_rows:
            fresh.setdefault(batch.table, []).append(after)
            fences[batch.table] = after.last_position
    held = {
        table: [(b.last_position or "", b.num_rows, heldbatch.encode(b)) for b in _runs(parts)]
        for table, parts in fresh.items()
    }
    if held:
        with state.transaction() as db:
            for table, items in held.items():
                state.hold_batches(db, pipeline.name, table, items)
        for table, items in held.items():
            pipeline.metrics.table_held_changes.labels(pipeline.name, table).inc(
                sum(n for _, n, _ in items)
            )
    return flowing


def _after(batch: ChangeBatch, fence: str | None) -> ChangeBatch:
    """The changes past ``fence`` (filtered in Arrow: a round trip through Polars would drop
    the field metadata, ``bson_type`` / ``pg_type``, that mapping and apply rely on)."""
    if fence is None:
        return batch
    return batch.replace(batch.data.filter(pc.greater(batch.data.column("_pos"), fence)))


def _runs(batches: list[ChangeBatch]) -> list[ChangeBatch]:
    """Consecutive batches with the same schema (field metadata included) and meta as one:
    a held row costs its schema once (about 1.6 KB), so a quiet stream's one-change batches
    are stored together. Arrow only: nothing is converted."""
    runs: list[ChangeBatch] = []
    for batch in batches:
        last = runs[-1] if runs else None
        if last is not None and _same_kind(last, batch):
            data = pa.concat_tables([last.data, batch.data])
            runs[-1] = ChangeBatch(batch.table, data, batch.key, batch.meta)
        else:
            runs.append(batch)
    return runs


def _same_kind(a: ChangeBatch, b: ChangeBatch) -> bool:
    def meta(x: ChangeBatch) -> dict[str, object]:
        return {k: v for k, v in x.meta.items() if k != "resume"}

    return (
        a.key == b.key
        and meta(a) == meta(b)
        and a.data.schema.equals(b.data.schema, check_metadata=True)
    )


def _confirm(pipeline: Pipeline) -> None:
    """Confirm the pipeline's pause requests, each logged (whichever of the two places that
    confirm sees the request first)."""
    for table in pipeline.state.confirm_pauses(pipeline.name):
        log.info("%s: %s paused: its changes are held in the state store", pipeline.name, table)


async def control(pipeline: Pipeline, pauses: dict[str, Pause] | None = None) -> None:
    """What the applier does between groups: confirm pause requests, release resumed tables,
    and publish which tables are paused. ``pauses``: as the caller read them before it
    settled the commit in flight; a request that came after that read is confirmed at the
    next group, once that commit is settled (confirmed before, the commit could still land
    changes of the table after its pause said it was held)."""
    state = pipeline.state
    if pauses is None:
        pauses = state.pauses(pipeline.name)
    if not pauses:
        return
    if any(p.status == "pausing" for p in pauses.values()):
        _confirm(pipeline)
    for table, pause in pauses.items():
        pipeline.metrics.table_paused.labels(pipeline.name, table).set(1)
        pipeline.metrics.table_held_changes.labels(pipeline.name, table).set(pause.held_rows)
        if pause.status == "resuming":
            await release(pipeline, table)


async def release(pipeline: Pipeline, table: str) -> int:
    """Apply what ``table`` holds, in order, and end its pause; returns changes released.
    Only while its status is ``resuming`` (a new ``pause`` stops the release)."""
    state = pipeline.state
    released = 0
    max_rows = pipeline.config.batch.max_rows
    while True:
        pause = state.pauses(pipeline.name).get(table)
        if pause is None or pause.status != "resuming":
            return released
        ids: list[int] = []
        batches: list[ChangeBatch] = []
        for item in state.held_batches(pipeline.name, table, RELEASE_FETCH):
            held = heldbatch.decode(item.payload)
            # held changes lie below the checkpoint the stream moved on to: not fenced by it
            batches.append(replace(held, meta={**held.meta, REPLAYED: True}))
            ids.append(item.id)
            if sum(b.num_rows for b in batches) >= max_rows:
                break
        if not batches:
            with state.transaction() as db:
                if state.finish_resume(db, pipeline.name, table):
                    log.info("%s: %s resumed (%d held changes applied)", pipeline.name, table,
                             released)  # fmt: skip
                    pipeline.metrics.table_held_changes.labels(pipeline.name, table).set(0)
                    pipeline.metrics.table_paused.labels(pipeline.name, table).set(0)
                    return released
            continue
        await pipeline.process(batches, None, release=True)
        rows = sum(b.num_rows for b in batches)
        with state.transaction() as db:
            state.release_batches(db, pipeline.name, table, ids, rows)
        released += rows
