"""``syncengine deadletters replay``: send set-aside records through the current mapping again.

A dead letter's payload is the original source row (with ``_op``/``_pos``/``_ts``) as JSON.
Replay rebuilds a batch typed like the source table (the schema is taken from the start of a
side-effect-free scan), runs it through the pipeline's mappings, conflict check and target
like any other batch, and marks the letters replayed. Records that fail again are
dead-lettered again with the new reason. Target-stage letters (rows the target refused) are
replayed the same way from their mapped row.

Caveat: the stored change is applied as it was. If the same row changed successfully after it
was dead-lettered, replaying the older change overwrites the newer one; replay right after
fixing the mapping, and check with ``verify`` (which names any row that went back in time).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator
from datetime import datetime

import pyarrow as pa

from syncengine.changes import OPS, ChangeBatch
from syncengine.config.models import PipelineConfig
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import DeadLetter, StateStore

log = logging.getLogger("syncengine.replay")


async def _source_schema(pipeline: Pipeline, table: str) -> tuple[pa.Schema, tuple[str, ...]]:
    scan = pipeline.source.scan(table)
    try:
        batch = await anext(scan)
    finally:
        if isinstance(scan, AsyncGenerator):  # the protocol promises an iterator only
            await scan.aclose()
    return batch.rows.schema, batch.key


def _column(values: list[object], field: pa.Field) -> pa.Array:
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([None if v is None else str(v) for v in values]).cast(field.type)


def _timestamp(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


async def replay(pipeline: Pipeline, letters: list[DeadLetter]) -> tuple[int, int]:
    """Replays ``letters``; returns (replayed, dead-lettered again)."""
    by_table: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        by_table[letter.table].append(letter)
    replayed = failed_again = 0
    for table, group in by_table.items():
        group.sort(key=lambda letter: (letter.position or "", letter.id or 0))
        schema, key = await _source_schema(pipeline, table)
        rows = [json.loads(letter.payload) for letter in group]
        data = pa.table(
            {f.name: _column([r.get(f.name) for r in rows], f) for f in schema}, schema=schema
        )
        ops = [r.get("_op") if r.get("_op") in OPS else "c" for r in rows]
        batch = ChangeBatch.build(
            table,
            data,
            ops=ops,
            positions=[
                str(r.get("_pos") or letter.position or "")
                for r, letter in zip(rows, group, strict=True)
            ],
            ts=[_timestamp(r.get("_ts")) for r in rows],
            key=key,
        )
        report = await pipeline.process([batch], None)
        pipeline.state.mark_replayed([letter.id for letter in group if letter.id is not None])
        replayed += len(group)
        failed_again += report.dead_letters
        log.info("%s/%s: replayed %d dead letter(s)", pipeline.name, table, len(group))
    return replayed, failed_again


async def replay_letters(
    name: str, spec: PipelineConfig, state: StateStore, ids: set[int] | None = None
) -> tuple[int, int]:
    """``deadletters replay`` of one pipeline (only ``ids`` if given) under the pipeline's
    lock, so it never runs beside a daemon or sync of the same pipeline; returns (replayed,
    dead-lettered again), (0, 0) when there was nothing to replay. The CLI and the console
    both call this."""
    letters = [letter for letter in state.list_dead_letters(name) if not ids or letter.id in ids]
    if not letters:
        return 0, 0
    with state.lock(name, "deadletters replay"):
        job = Pipeline(name, spec, state)
        await job.open()
        try:
            return await replay(job, letters)
        finally:
            await job.close()
